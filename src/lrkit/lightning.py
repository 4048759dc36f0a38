"""lrkit in Lightning: `lrkit.Scheduler` as a step-interval scheduler, and a callback for plateau, Guard and Monitor.

`lrkit.Scheduler` needs no adapter: return it from `configure_optimizers` with
`"interval": "step"`; Lightning saves and restores its `state_dict`, so a run
resumed from a checkpoint gets exactly the lrs of an unbroken one. `LrkitCallback`
adds what Lightning lacks: a plateau on top of the schedule (warmup + cosine +
plateau), fed a logged validation metric after each validation; the `lrkit.Guard`
(a NaN or spiking batch is dropped, repeated divergence rolls back with a cut lr);
and the `lrkit.Monitor`'s columns and diagnosis sent to the trainer's logger.

Example:
    >>> import lightning, lrkit.lightning
    >>> isinstance(lrkit.lightning.LrkitCallback(metric=None), lightning.pytorch.Callback)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from lrkit import validate
from lrkit.errors import ControlError
from lrkit.torch.trainer_hooks import TrainerHooks, summary


class LrkitCallback(pl.Callback):
    """Feed a validation metric to the `lrkit.Scheduler`'s plateau, run the Guard, log the Monitor and its diagnosis.

    The scheduler is the first one `configure_optimizers` returns; it must be an
    `lrkit.Scheduler` (with `plateau=` when `metric` is given). Every `log_every`
    optimizer steps the Monitor's columns (`lrkit/lr`, `lrkit/grad_norm`,
    `lrkit/update_ratio`, `lrkit/plateau_scale`, `lrkit/loss`, ...) go to the trainer's loggers; at the end
    of fit the diagnosis goes to the logger (`lrkit/diagnosis/<kind>` = 1 with its
    evidence) and to the console, and stays in `findings`. The Guard's snapshots are
    not part of a checkpoint: a resumed run starts a new guard.

    Args:
        metric: the logged metric the plateau watches (e.g. "val_loss"); None: none.
        guard: True, False, or a dict of `lrkit.Guard` keyword arguments.
        monitor: record and log the Monitor.
        log_every: optimizer steps between logged Monitor rows.

    Example:
        >>> cb = LrkitCallback(metric="val_loss", guard={"snapshot_every": 50})
        >>> cb.hooks.guard_options
        {'snapshot_every': 50}
    """

    def __init__(
        self, metric: str | None = "val_loss", guard: bool | Mapping[str, Any] = True, monitor: bool = True, log_every: int = 1
    ) -> None:
        self.hooks = TrainerHooks(metric, guard, monitor, owner="LrkitCallback")
        self.log_every = validate.integer("LrkitCallback", "log_every", log_every, ControlError)
        self._loss: Any = None

    @property
    def findings(self) -> list[Any]:
        """The Monitor's diagnosis at the end of fit (`lrkit.analysis.diagnose.Finding`s)."""
        return self.hooks.findings

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        configs = trainer.lr_scheduler_configs
        if not configs:
            validate.fail("LrkitCallback", "scheduler", "must be returned by configure_optimizers (an lrkit.Scheduler)", None, ControlError)
        interval = configs[0].interval
        if interval != "step":
            validate.fail("LrkitCallback", "interval", "must be 'step' (lrkit schedules count optimizer steps)", interval, ControlError)
        self.hooks.attach(pl_module, configs[0].scheduler)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any) -> None:
        self._loss = loss.detach()

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.hooks.check(self._loss)  # a dropped batch's gradients are gone: optimizer.step() changes nothing

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        row = self.hooks.record(trainer.global_step, self._loss)
        if row and trainer.global_step % self.log_every == 0:  # straight to the loggers: log_every, not log_every_n_steps, decides
            for logger in trainer.loggers:
                logger.log_metrics({f"lrkit/{k}": v for k, v in row.items()}, step=trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.hooks.observe(trainer.callback_metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        findings = self.hooks.diagnose()
        for logger in trainer.loggers if findings else []:
            logger.log_metrics(summary(findings), step=trainer.global_step)
        for finding in findings:
            rank_zero_info(f"lrkit: {finding}")
