"""What the Lightning and Hugging Face callbacks share: plateau feeding, the Guard and the Monitor around a trainer's loop.

A trainer owns its loop, so lrkit cannot `continue` past a bad batch as in a plain
loop. Instead, after `backward()`, `check(loss)` runs the `lrkit.Guard`; on an
incident the guard has dropped the gradients (`set_to_none`), so the trainer's
`optimizer.step()` changes nothing, and a step hook registered after
`lrkit.Scheduler`'s own marks that step as not taken: the schedule does not advance
either, exactly as in the plain loop (`if guard.check(loss): continue`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from lrkit import validate
from lrkit.analysis.diagnose import Finding
from lrkit.errors import ControlError
from lrkit.torch.guard import Guard
from lrkit.torch.monitor import Monitor
from lrkit.torch.scheduler import Scheduler


class TrainerHooks:
    """The framework-free core of `lrkit.lightning.LrkitCallback` and `lrkit.hf.LrkitCallback`.

    Args:
        metric: the logged validation metric fed to the scheduler's plateau (None: none).
        guard: run an `lrkit.Guard` (True, or a dict of its keyword arguments).
        monitor: record an `lrkit.Monitor` row per optimizer step.
        owner: the name errors give (the callback's).

    Example:
        >>> import torch, lrkit
        >>> model = torch.nn.Linear(1, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=1.0)
        >>> hooks = TrainerHooks(metric=None, guard=True)
        >>> hooks.attach(model, lrkit.Scheduler(opt, lr=lrkit.constant(0.1)))
        >>> hooks.check(torch.tensor(float("nan"))), hooks.guard.incidents[0].action
        (True, 'skip')
    """

    def __init__(
        self, metric: str | None = "val_loss", guard: bool | Mapping[str, Any] = True, monitor: bool = True, owner: str = "TrainerHooks"
    ) -> None:
        self.owner = owner  # the callback named in error messages
        if metric is not None:
            validate.instance(self.owner, "metric", metric, ControlError, str, "the name of a logged metric or None")
        if not isinstance(guard, Mapping):
            validate.flag(self.owner, "guard", guard, ControlError)
        self.metric = metric
        self.guard_options: dict[str, Any] | None = dict(guard) if isinstance(guard, Mapping) else ({} if guard else None)
        self.monitor_on = validate.flag(self.owner, "monitor", monitor, ControlError)
        self.scheduler: Scheduler | None = None
        self.guard: Guard | None = None
        self.monitor: Monitor | None = None
        self.findings: list[Finding] = []
        self.skipped = False  # whether the current batch was dropped by the guard

    def attach(self, model: torch.nn.Module, scheduler: Any) -> None:
        """Build the Guard and Monitor over `model` and the optimizer of `scheduler` (an `lrkit.Scheduler`)."""
        self.scheduler = validate.instance(self.owner, "scheduler", scheduler, ControlError, Scheduler, "an lrkit.Scheduler")
        optimizer = scheduler.optimizer
        if self.metric is not None and scheduler.plateau is None:
            requirement = "needs a Scheduler built with plateau=lrkit.Plateau(...) to feed (or metric=None)"
            validate.fail(self.owner, "metric", requirement, self.metric, ControlError)
        if self.guard_options is not None:
            self.guard = Guard(model, optimizer, scheduler, **self.guard_options)
            optimizer.register_step_post_hook(self._after_optimizer_step)  # after the Scheduler's hook: it may undo its mark
        if self.monitor_on:
            self.monitor = Monitor(optimizer, model, scheduler)

    def _after_optimizer_step(self, *_: Any) -> None:
        if self.skipped and self.scheduler is not None:
            self.scheduler.discard_step()  # the step changed nothing (no gradients): the schedule must not advance

    def check(self, loss: Any) -> bool:
        """After `backward()`: run the guard on this batch's loss and gradients; True when the batch is dropped."""
        self.skipped = self.guard is not None and self.guard.check(loss, grads=True)
        return self.skipped

    def record(self, step: int, loss: Any) -> dict[str, float]:
        """Add a Monitor row for `step` (the loss and what the monitor reads) and return its finite numbers.

        A batch the guard dropped is not recorded, as in the plain loop's `continue`.
        """
        if self.monitor is None or self.skipped or (len(self.monitor) and step <= self.monitor.history["step"][-1]):
            return {}
        self.monitor.record(step, loss=loss)
        return {name: float(column[-1]) for name, column in self.monitor.history.items() if name != "step" and math.isfinite(column[-1])}

    def observe(self, metrics: Mapping[str, Any]) -> float | None:
        """Feed `metrics[self.metric]` to the plateau (a missing metric raises ControlError listing those logged)."""
        if self.metric is None or self.scheduler is None:
            return None
        if self.metric not in metrics:
            requirement = f"must be logged during validation (logged: {sorted(metrics)})"
            validate.fail(self.owner, "metric", requirement, self.metric, ControlError)
        value = validate.scalar(self.owner, self.metric, metrics[self.metric], ControlError, finite=True)
        self.scheduler.observe(value)
        return value

    def diagnose(self) -> list[Finding]:
        """The Monitor's findings (kept in `findings`); none, with a warning saying why, when too little was recorded."""
        if self.monitor is None or not len(self.monitor):
            return self.findings
        try:
            self.findings = self.monitor.diagnose()
        except ControlError as e:  # too short a run for the rules: say so, training itself went fine
            warnings.warn(f"lrkit: no diagnosis of this run: {e}", stacklevel=2)
        return self.findings


def summary(findings: list[Finding], prefix: str = "lrkit/") -> dict[str, float]:
    """The findings as logger metrics: one `lrkit/diagnosis/<kind>` = 1.0 per finding, with its evidence.

    Example:
        >>> summary([Finding("healthy", (0, 9), {"final_loss": 0.5}, "")])
        {'lrkit/diagnosis/healthy': 1.0, 'lrkit/diagnosis/healthy/final_loss': 0.5}
    """
    out: dict[str, float] = {}
    for f in findings:
        out[f"{prefix}diagnosis/{f.kind}"] = 1.0
        out.update({f"{prefix}diagnosis/{f.kind}/{k}": float(v) for k, v in f.evidence.items() if math.isfinite(v)})
    return out
