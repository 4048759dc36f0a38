"""`lrkit.Scheduler` in Lightning (step interval, exact resume) and `lrkit.lightning.LrkitCallback` (plateau, Guard, Monitor)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit

pl = pytest.importorskip("lightning.pytorch")
from lrkit.lightning import LrkitCallback  # noqa: E402

SCHEDULE = lrkit.warmup(lrkit.cosine(start=0.05, steps=60), steps=8)


class Regression(pl.LightningModule):
    """A tiny linear regression whose lrkit.Scheduler steps per optimizer step; `nan_at` poisons one step's loss."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.nan_at = nan_at

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        return loss * math.nan if self.global_step == self.nan_at else loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=1.0, momentum=0.9)
        sched = lrkit.Scheduler(opt, lr=SCHEDULE, plateau=lrkit.Plateau(patience=0, factor=0.5, threshold=0.05))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class LrRecorder(pl.Callback):
    """The lr each optimizer step uses."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _loaders() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = x.sum(1, keepdim=True) + 0.5 * torch.randn(96, 1, generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(64)), batch_size=8)  # 8 steps an epoch, fixed order
    return train, torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(64, 96)), batch_size=32)


def _fit(epochs: int, callbacks: list, *, ckpt: Path | None = None, logger: Any = False, module: Any = None) -> tuple[Any, Any]:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks,
    )  # fmt: skip
    module = module or Regression()
    trainer.fit(module, *_loaders(), ckpt_path=ckpt)
    return trainer, module


def test_a_run_resumed_from_a_checkpoint_has_the_lrs_of_an_unbroken_one(tmp_path: Path) -> None:
    whole = LrRecorder()
    trainer, module = _fit(6, [LrkitCallback(guard=False, monitor=False), whole])
    first, second = LrRecorder(), LrRecorder()
    broken, _ = _fit(3, [LrkitCallback(guard=False, monitor=False), first])
    broken.save_checkpoint(tmp_path / "half.ckpt")
    resumed, resumed_module = _fit(6, [LrkitCallback(guard=False, monitor=False), second], ckpt=tmp_path / "half.ckpt")
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.plateau_state.changes >= 1  # the plateau really acted, and its state travelled in the checkpoint
    assert len(whole.lrs) == 48 and first.lrs + second.lrs == whole.lrs
    assert resumed.lr_scheduler_configs[0].scheduler.state_dict() == sched.state_dict()
    for a, b in zip(module.parameters(), resumed_module.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_plateau_sits_on_top_of_warmup_and_cosine(tmp_path: Path) -> None:
    recorder, val = LrRecorder(), []

    class KeepVal(pl.Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            val.append(float(trainer.callback_metrics["val_loss"]))

    _fit(6, [KeepVal(), LrkitCallback(guard=False, monitor=False), recorder])
    plateau, scales = lrkit.Plateau(patience=0, factor=0.5, threshold=0.05), []
    state = plateau.init()
    for epoch in range(6):  # replay the controller on the logged metrics: each epoch's 8 steps use the scale of the one before
        scales += [state.scale] * 8
        state = plateau.update(state, val[epoch], SCHEDULE(8 * epoch + 8))
    assert state.changes >= 1
    np.testing.assert_allclose(recorder.lrs, SCHEDULE.values(np.arange(48)) * np.asarray(scales), rtol=1e-12, atol=0)


def test_the_guard_drops_a_nan_batch_and_the_monitor_reaches_the_logger(tmp_path: Path) -> None:
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    callback = LrkitCallback()
    trainer, module = _fit(6, [callback], logger=logger, module=Regression(nan_at=5))
    assert [(i.step, i.action) for i in callback.hooks.guard.incidents] == [(5, "skip")]
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == trainer.global_step - 1  # the dropped step did not advance the schedule
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [float(r["lrkit/lr"]) for r in rows if r.get("lrkit/lr")]
    assert len(logged) == 47 and logged[0] == SCHEDULE(1)  # 48 steps less the dropped one; each row after its step
    assert callback.findings and any(r.get(f"lrkit/diagnosis/{callback.findings[0].kind}") == "1.0" for r in rows)


def test_the_callback_refuses_a_scheduler_without_plateau() -> None:
    class NoPlateau(Regression):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": lrkit.Scheduler(opt, lr=SCHEDULE), "interval": "step"}}

    with pytest.raises(lrkit.ControlError, match="LrkitCallback: parameter 'metric' needs a Scheduler built with plateau="):
        _fit(1, [LrkitCallback()], module=NoPlateau())
