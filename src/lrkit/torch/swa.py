"""`WeightAveraging`: SWA or EMA of a model's weights during training, on `torch.optim.swa_utils`.

The averaging is torch's own (`AveragedModel`, `get_ema_multi_avg_fn`, `update_bn`); this class
only decides, from a pure `lrkit.schedules.Averaging` plan, after which optimizer steps the
weights enter, and runs the BatchNorm update at the end. Pair it with `lrkit.swa_schedule`
driving the lr through `lrkit.Scheduler`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.schedules.swa import Averaging


class WeightAveraging:
    """Average `model`'s weights after the optimizer steps `plan` names; `finish(loader)` then updates BatchNorm.

    Call `update()` once after every optimizer step (it counts the steps). `averaged` is the
    `AveragedModel`; `module` the averaged network to evaluate (after `finish`).

    Args:
        model: the network being trained.
        plan: an `Averaging` (kind "swa" or "ema", start, every, decay); default: SWA of every step from 0.
        device: where the average lives (default: with the model), as `AveragedModel`'s `device`.

    Example:
        >>> import torch, lrkit
        >>> from lrkit.schedules import Averaging
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=1.0)
        >>> sched = lrkit.Scheduler(opt, lr=lrkit.schedules.swa_schedule(lrkit.constant(0.1), 5, swa_lr=0.05, anneal_steps=2))
        >>> avg = WeightAveraging(model, Averaging(start=5))
        >>> for _ in range(10):
        ...     opt.zero_grad(); model(torch.ones(4, 2)).pow(2).mean().backward(); opt.step(); sched.step()
        ...     entered = avg.update()
        >>> avg.entries, avg.finish([torch.ones(4, 2)]) is avg.module
        (5, True)
    """

    def __init__(self, model: torch.nn.Module, plan: Averaging | None = None, *, device: torch.device | int | None = None) -> None:
        self.model = validate.instance("WeightAveraging", "model", model, ScheduleError, torch.nn.Module, "a torch.nn.Module")
        self.plan = Averaging() if plan is None else plan
        validate.instance("WeightAveraging", "plan", self.plan, ScheduleError, Averaging, "an lrkit.schedules.Averaging")
        ema = get_ema_multi_avg_fn(self.plan.decay) if self.plan.kind == "ema" else None  # type: ignore[no-untyped-call]
        self.averaged = AveragedModel(model, device=device, multi_avg_fn=ema)
        self.step = 0

    @property
    def module(self) -> torch.nn.Module:
        """The averaged network (evaluate it after `finish`)."""
        module: torch.nn.Module = self.averaged.module
        return module

    @property
    def entries(self) -> int:
        """How many times the weights have entered the average."""
        return int(self.averaged.n_averaged)

    def update(self) -> bool:
        """After an optimizer step: average the weights if the plan names this step; whether it did."""
        due = bool(self.plan.due(self.step))
        self.step += 1
        if due:
            self.averaged.update_parameters(self.model)
        return due

    def finish(self, loader: Iterable[Any], device: torch.device | int | None = None) -> torch.nn.Module:
        """Recompute the averaged network's BatchNorm statistics over `loader` (`update_bn`); returns `module`.

        `loader` yields input batches, or tuples whose first item is the input (a DataLoader of (x, y)).
        """
        if self.entries == 0:
            validate.fail("WeightAveraging.finish", "plan", f"averaged no weights in {self.step} steps", self.plan, ScheduleError)
        update_bn(loader, self.averaged, device=device)
        return self.module

    def state_dict(self) -> dict[str, Any]:
        """The step count and the averaged model's state (its weights and `n_averaged`).

        Example:
            >>> import torch
            >>> sorted(WeightAveraging(torch.nn.Linear(2, 1)).state_dict())
            ['averaged', 'step']
        """
        return {"step": self.step, "averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from `state_dict()`.

        Example:
            >>> import torch
            >>> a = WeightAveraging(torch.nn.Linear(2, 1))
            >>> a.load_state_dict({**a.state_dict(), "step": 7}); a.step
            7
        """
        self.step = validate.integer("WeightAveraging.load_state_dict", "step", state.get("step"), ScheduleError, minimum=0)
        self.averaged.load_state_dict(state["averaged"])
