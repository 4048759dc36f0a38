"""`lrkit.Scheduler` in the HF Trainer (exact resume) and `lrkit.hf.LrkitCallback` (plateau on warmup + cosine, Guard, Monitor)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
from lrkit.hf import LrkitCallback  # noqa: E402

SCHEDULE = lrkit.warmup(lrkit.cosine(start=2e-3, steps=30), steps=4)


def _model() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=16,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 25).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


class LrRecorder(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.lrs[state.global_step] = optimizer.param_groups[0]["lr"]


def _trainer(out: Path, callbacks: list, max_steps: int = 20, model: Any = None, **options: Any) -> Any:
    model = model or _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched = lrkit.Scheduler(opt, lr=SCHEDULE, plateau=lrkit.Plateau(patience=0, factor=0.5, threshold=0.02))
    args = dict(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8, eval_strategy="steps", eval_steps=4,
        save_strategy="steps", save_steps=10, logging_steps=2, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    ) | options  # fmt: skip
    data = {"train_dataset": Tokens(96, 0), "eval_dataset": Tokens(32, 1)}
    args = transformers.TrainingArguments(**args)
    return transformers.Trainer(model=model, args=args, optimizers=(opt, sched), callbacks=callbacks, **data)


@pytest.mark.slow
def test_resume_from_a_checkpoint_gives_the_lrs_of_the_unbroken_run_with_the_plateau_on_warmup_cosine(tmp_path: Path) -> None:
    whole, evals = LrRecorder(), []

    class KeepEval(transformers.TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            evals.append(metrics["eval_loss"])

    trainer = _trainer(tmp_path, [KeepEval(), LrkitCallback(guard=False, monitor=False), whole])
    trainer.train()
    sched = trainer.lr_scheduler
    # the plateau sits on top of the schedule: every lr is the schedule's value times the replayed plateau scale
    plateau, scales = lrkit.Plateau(patience=0, factor=0.5, threshold=0.02), []
    state = plateau.init()
    for i in range(5):
        scales += [state.scale] * 4
        state = plateau.update(state, evals[i], SCHEDULE(4 * i + 4))
    assert state.changes >= 1 and sched.plateau_state.changes == state.changes
    np.testing.assert_allclose([whole.lrs[t] for t in range(20)], SCHEDULE.values(np.arange(20)) * np.asarray(scales), rtol=1e-12)
    resumed = LrRecorder()
    again = _trainer(tmp_path / "again", [LrkitCallback(guard=False, monitor=False), resumed])
    again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    assert resumed.lrs == {t: whole.lrs[t] for t in range(10, 20)}
    assert again.lr_scheduler.state_dict() == sched.state_dict()


def test_the_guard_drops_a_nan_batch_and_the_monitor_lands_in_the_logs(tmp_path: Path) -> None:
    model, calls = _model(), [0]

    def poison(module: Any, inputs: Any, outputs: Any) -> Any:
        calls[0] += module.training
        if module.training and calls[0] == 6:
            outputs["loss"] = outputs["loss"] * math.nan
        return outputs

    model.register_forward_hook(poison)
    callback = LrkitCallback(metric=None, guard={"snapshot_every": 5})
    trainer = _trainer(tmp_path, [callback], max_steps=44, model=model, eval_strategy="no", save_strategy="no")
    trainer.train()
    assert [(i.step, i.action) for i in callback.hooks.guard.incidents] == [(5, "skip")]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.lr_scheduler.last_epoch == 43  # 44 steps, one dropped: the schedule did not advance on it
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all("lrkit/lr" in h and "lrkit/update_ratio" in h for h in logged)
    assert callback.findings and trainer.state.log_history[-1]["lrkit/findings"] == [str(f) for f in callback.findings]
