"""Tutorial 6: choose the lr for your own model with `lrkit.search_lr`, then use the same schedule in Keras, Lightning and the HF Trainer.

1. `search_lr` trains every candidate (9 peak lrs x constant / cosine / one-cycle, 2 inits) of a small
   PyTorch MLP on the digits data at once and keeps the best on validation data: its winner is a peak
   lr and a schedule over optimizer steps (`result.schedule`), a pure value.
2. That one value drives three other trainers, and each applies exactly its lrs at every optimizer step:
   Keras (`lrkit.keras.LearningRateSchedule` in `keras.optimizers.Adam`), Lightning (`lrkit.Scheduler`
   returned from `configure_optimizers` with `"interval": "step"`) and the Hugging Face Trainer
   (`Trainer(optimizers=(opt, lrkit.Scheduler(opt, lr=schedule)))`, a tiny BERT built from a config).

Run: `python examples/06_search_and_adapters.py [FIGURES_DIR]` (about 40 s on one core).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _tutorial import findings, out_dir, save

import lrkit
import lrkit.lab
from lrkit.torch.data import epoch_batches, steps_per_epoch

EPOCHS, STEPS = 6, 24  # the search's budget; the adapters' runs (optimizer steps)


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def search(problem: lrkit.lab.Problem) -> lrkit.SearchResult:
    train = list(epoch_batches(problem.x_train, problem.y_train, problem.batch_size, seed=0, epochs=1))
    return lrkit.search_lr(make_model, "adam", F.cross_entropy, train, (problem.x_test, problem.y_test), epochs=EPOCHS,
                           lrs=np.logspace(-4, 0, 9).tolist(), shapes=("constant", "cosine", "one_cycle"), seeds=2,
                           progress=False)  # fmt: skip


def keras_lrs(schedule: lrkit.Schedule, x: np.ndarray, y: np.ndarray) -> list[float]:
    """The lr Keras' Adam applies at each of STEPS training steps, read by a callback before each batch."""
    import keras

    import lrkit.keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    opt = keras.optimizers.Adam(learning_rate=lrkit.keras.LearningRateSchedule(schedule))
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen: list[float] = []
    record = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(float(opt.learning_rate)))
    model.fit(x[: STEPS * 32], y[: STEPS * 32], batch_size=32, epochs=1, verbose=0, callbacks=[record], shuffle=False)
    return seen


def lightning_lrs(schedule: lrkit.Schedule, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The lr of each optimizer step of a Lightning run whose scheduler is `lrkit.Scheduler(opt, lr=schedule)`."""
    import lightning.pytorch as pl

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.seen = make_model(), []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.seen.append(self.optimizers().param_groups[0]["lr"])
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters())
            return {"optimizer": opt, "lr_scheduler": {"scheduler": lrkit.Scheduler(opt, lr=schedule), "interval": "step"}}

    logging.getLogger("lightning").setLevel(logging.ERROR)
    module = Classifier()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tempfile.mkdtemp())  # fmt: skip
    trainer.fit(module, data)
    return module.seen


def hf_lrs(schedule: lrkit.Schedule) -> list[float]:
    """The lr of each optimizer step of an HF Trainer run on a tiny BERT (from a config) with `lrkit.Scheduler`."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=16, num_labels=2)  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    ids = torch.randint(1, 50, (STEPS * 8, 8), generator=torch.Generator().manual_seed(0))
    rows = [{"input_ids": i, "attention_mask": torch.ones(8, dtype=torch.long), "labels": int(i[0] > 25)} for i in ids]
    seen: list[float] = []

    class Record(transformers.TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            seen.append(optimizer.param_groups[0]["lr"])

    opt = torch.optim.AdamW(model.parameters())
    args = transformers.TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=STEPS, per_device_train_batch_size=8, report_to=[],
                                          use_cpu=True, disable_tqdm=True, save_strategy="no", logging_strategy="no")  # fmt: skip
    transformers.Trainer(model=model, args=args, train_dataset=rows, optimizers=(opt, lrkit.Scheduler(opt, lr=schedule)),
                         callbacks=[Record()]).train()  # fmt: skip
    return seen


def gap(seen: list[float], schedule: lrkit.Schedule) -> float:
    """The largest relative difference between the lrs a trainer applied and the schedule's at the same steps."""
    want = schedule.values(np.arange(len(seen)))
    return float(np.max(np.abs(np.asarray(seen) - want) / np.maximum(want, 1e-12)))


def main() -> None:
    out = out_dir()
    problem = lrkit.lab.get_problem("digits")
    result = search(problem)
    print(result.summary())
    save(result.plot(), out, "search.png")
    schedule = result.schedule  # over the search's optimizer steps; the adapters' short runs apply its first STEPS
    total = EPOCHS * steps_per_epoch(len(problem.x_train), problem.batch_size)
    print(f"winner: lr {result.lr:g}, schedule {result.schedule!r} ({total} steps)")
    x, y = problem.x_train.numpy(), problem.y_train.numpy()
    applied = {"keras": keras_lrs(schedule, x, y), "lightning": lightning_lrs(schedule, problem.x_train, problem.y_train),
               "hf": hf_lrs(schedule)}  # fmt: skip
    gaps = {name: gap(seen, schedule) for name, seen in applied.items()}
    for name, seen in applied.items():
        print(f"  {name}: {len(seen)} steps, lr at step 0 {seen[0]:.4g} (lrkit: {schedule(0):.4g}),"
              f" at step {len(seen) - 1} {seen[-1]:.4g} (lrkit: {schedule(len(seen) - 1):.4g}); largest relative gap {gaps[name]:.1e}")
    findings({"lr": result.lr, "schedule": repr(result.schedule), "steps": {k: len(v) for k, v in applied.items()}, "gaps": gaps,
              "candidates": len(result.table)})  # fmt: skip


if __name__ == "__main__":
    main()
