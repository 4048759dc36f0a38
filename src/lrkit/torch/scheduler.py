"""`lrkit.Scheduler`: a pure schedule driving a real PyTorch optimizer.

The lr of every group after `n` effective steps is the closed form
`lr(n) * scale * group_scale`, where `scale` is the product of the controllers'
multipliers (a plateau, a divergence guard). Nothing is recursive, so resuming
from `state_dict()` at any step gives exactly the lrs of an unbroken run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.optim.lr_scheduler import LRScheduler

from lrkit import validate
from lrkit.errors import ScheduleError
from lrkit.protocols import PlateauLike, ScaleState
from lrkit.schedules.base import Schedule

_CHUNK = 4096  # schedule values are computed ahead in blocks: one numpy call per block


class _Table:
    """A schedule's values computed ahead in blocks of `_CHUNK` steps: one numpy call per block, not one per step.

    Each block is checked as it is computed (so a schedule's values over a whole run are
    checked at the cost of one vectorised comparison per block): every value must lie
    in [0, `high`), or in [0, inf) when `high` is None, else ScheduleError names the step.
    """

    def __init__(self, schedule: Schedule, param: str, high: float | None = None) -> None:
        self.schedule, self.param, self.high = schedule, param, high
        self.start = -1
        self.values: npt.NDArray[np.float64] = np.empty(0)

    def __call__(self, step: int) -> float:
        start = step - step % _CHUNK
        if start != self.start:
            self.values = self._checked(start, self.schedule.values(np.arange(start, start + _CHUNK)))
            self.start = start
        return float(self.values[step - start])

    def _checked(self, start: int, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        bad = ~((values >= 0) & (values < self.high if self.high is not None else np.isfinite(values)))
        if bad.any():
            at = int(np.argmax(bad))
            interval = f"[0, {self.high:g})" if self.high is not None else "[0, inf) (finite, >= 0)"
            requirement = f"must stay in {interval} at every step (step {start + at})"
            validate.fail("Scheduler", self.param, requirement, float(values[at]), ScheduleError)
        return values


class Scheduler(LRScheduler):
    """Drive an optimizer's lr (and momentum) from lrkit schedules.

    Args:
        optimizer: any `torch.optim.Optimizer`.
        lr: the learning-rate schedule, counted in optimizer steps.
        momentum: optional schedule for `momentum` (SGD-like) or `betas[0]` (Adam-like);
            its values must lie in [0, 1) (those of `lr` in [0, inf)), checked block by
            block as the run reaches them: a bad value raises ScheduleError naming the step.
        group_scales: each group's lr relative to `lr`; default: the ratios of the
            groups' lrs to the first group's when the scheduler is built.
        plateau: optional `lrkit.Plateau` (or any `lrkit.protocols.PlateauLike`), fed with
            `observe(metric)`; its scale multiplies the schedule, so warmup, cosine,
            cycles and plateau compose.
        follow_optimizer: advance only when the optimizer really stepped since the
            last `step()` (a step skipped by `torch.amp.GradScaler` does not count).

    Example:
        >>> import torch, lrkit
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> sched = lrkit.Scheduler(opt, lr=lrkit.linear(start=0.1, end=0.0, steps=10))
        >>> for _ in range(5):
        ...     opt.step()
        ...     sched.step()
        >>> round(sched.get_last_lr()[0], 6)
        0.05
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: Schedule,
        momentum: Schedule | None = None,
        *,
        group_scales: Sequence[float] | None = None,
        plateau: PlateauLike | None = None,
        follow_optimizer: bool = True,
    ) -> None:
        _check_arguments(optimizer, lr, momentum, plateau)
        self.lr = lr
        self.momentum = momentum
        self.momentum_key = _momentum_key(optimizer) if momentum is not None else None
        self.group_scales = _group_scales(optimizer, group_scales)
        self.plateau = plateau
        self.plateau_state: ScaleState | None = plateau.init() if plateau is not None else None
        self.multiplier = 1.0
        self.follow_optimizer = follow_optimizer
        self._stepped = False
        self._lr_table = _Table(lr, "lr")
        self._momentum_table = _Table(momentum, "momentum", high=1.0) if momentum is not None else None  # momentum and betas: [0, 1)
        optimizer.register_step_post_hook(self._on_optimizer_step)
        super().__init__(optimizer)

    def _on_optimizer_step(self, *_: Any) -> None:
        self._stepped = True

    def discard_step(self) -> None:
        """Forget the optimizer step taken since the last `step()`: the next `step()` then holds the schedule where it is.

        For a trainer that calls `optimizer.step()` on a batch a guard dropped (no gradients, nothing changed).

        Example:
            >>> import torch, lrkit
            >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
            >>> sched = lrkit.Scheduler(opt, lr=lrkit.linear(start=1.0, end=0.0, steps=10))
            >>> opt.step(); sched.discard_step(); sched.step()
            >>> sched.last_epoch, opt.param_groups[0]["lr"]
            (0, 1.0)
        """
        self._stepped = False

    # -- the closed form -------------------------------------------------------
    def schedule_value(self, step: int) -> float:
        """The schedule's value at `step`, read from a table computed ahead in blocks."""
        return self._lr_table(step)

    @property
    def scale(self) -> float:
        """The controllers' combined multiplier: plateau scale times `multiplier`."""
        plateau = self.plateau_state.scale if self.plateau_state is not None else 1.0
        return self.multiplier * float(plateau)

    def _get_closed_form_lr(self) -> list[float]:
        base = self.schedule_value(self.last_epoch) * self.scale
        return [base * g for g in self.group_scales]

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The lr of every group at the current step (the closed form, never recursive)."""
        return self._get_closed_form_lr()

    # -- stepping --------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        """Advance one optimizer step (unless the optimizer skipped it) and write the lrs."""
        if epoch is not None:
            validate.fail("Scheduler.step", "epoch", "is not supported; wrap the schedule in lrkit.per_epoch", epoch, ScheduleError)
        first = self._step_count == 0
        self._step_count += 1
        if first:
            self.last_epoch = 0
        elif self._stepped or not self.follow_optimizer:
            self.last_epoch += 1
        self._stepped = False
        self.apply()

    def apply(self) -> None:
        """Write the closed-form lrs (and momentum) of the current step into the optimizer."""
        for group, value in zip(self.optimizer.param_groups, self._get_closed_form_lr()):
            write_hyperparameter(group, "lr", value)
        if self._momentum_table is not None:
            m = self._momentum_table(self.last_epoch)
            for group in self.optimizer.param_groups:
                if self.momentum_key == "betas":
                    write_beta1(group, m)
                else:
                    write_hyperparameter(group, "momentum", m)
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def observe(self, metric: float) -> None:
        """Feed the plateau controller one evaluation (e.g. a validation loss per epoch).

        Example:
            >>> import torch, lrkit
            >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
            >>> plateau = lrkit.Plateau(patience=0)
            >>> sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=plateau)
            >>> sched.observe(1.0); sched.observe(1.0)
            >>> round(sched.get_last_lr()[0], 6)
            0.01
        """
        if self.plateau is None:
            validate.fail("Scheduler.observe", "plateau", "must be given to Scheduler(...) before observe()", None, ScheduleError)
        value = validate.scalar("Scheduler.observe", "metric", metric, ScheduleError, finite=True)
        base = self.schedule_value(self.last_epoch) * self.multiplier * self.group_scales[0]
        self.plateau_state = self.plateau.update(self.plateau_state, value, base)
        self.apply()

    # -- state -----------------------------------------------------------------
    saved = ("step", "step_count", "multiplier", "plateau", "stepped")  # the keys of `state_dict()`

    def state_dict(self) -> dict[str, Any]:
        """The step count, whether the optimizer stepped since the last `step()`, and the controllers' state.

        An explicit whitelist, never `__dict__`; with `stepped`, a checkpoint taken between
        `opt.step()` and `sched.step()` resumes exactly, as torch's own schedulers do.

        Example:
            >>> import torch, lrkit
            >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
            >>> sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1))
            >>> opt.step(); sched.state_dict()
            {'step': 0, 'step_count': 1, 'multiplier': 1.0, 'plateau': None, 'stepped': True}
        """
        plateau = self.plateau_state
        if plateau is not None and dataclasses.is_dataclass(plateau):  # lrkit's states: plain numbers; a user's: as it is
            plateau = dataclasses.asdict(plateau)  # type: ignore[assignment]
        state = {"step": self.last_epoch, "step_count": self._step_count, "multiplier": self.multiplier, "plateau": plateau}
        return state | {"stepped": self._stepped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved state (checked: a bad one raises ScheduleError) and write the matching lrs into the optimizer.

        A state saved before `stepped` was recorded loads as not stepped.

        Example:
            >>> import torch, lrkit
            >>> sched = lrkit.Scheduler(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0), lr=lrkit.constant(0.1))
            >>> try:
            ...     sched.load_state_dict(sched.state_dict() | {"multiplier": float("nan")})
            ... except lrkit.ScheduleError as e:
            ...     print(e)
            Scheduler.load_state_dict: parameter 'multiplier' must be finite, got nan
        """
        checked = _checked_state(state_dict, self.saved)
        plateau = self._loaded_plateau(state_dict["plateau"])
        self.last_epoch, self._step_count, self.multiplier, self._stepped = checked
        self.plateau_state = plateau
        self.apply()

    def _loaded_plateau(self, saved: Any) -> ScaleState | None:
        func = "Scheduler.load_state_dict"
        if (saved is None) != (self.plateau is None):
            validate.fail(func, "plateau", "must match whether this Scheduler has a plateau", saved, ScheduleError)
        if self.plateau is None:
            return None
        initial = self.plateau.init()
        if not dataclasses.is_dataclass(initial):
            return saved  # type: ignore[no-any-return]
        fields = {f.name for f in dataclasses.fields(initial)}
        validate.instance(func, "plateau", saved, ScheduleError, dict, f"a dict of {sorted(fields)}")
        unknown = sorted(set(saved) - fields)
        if unknown:
            validate.fail(func, "plateau", f"has unknown keys {unknown} (valid: {sorted(fields)})", saved, ScheduleError)
        for key, value in saved.items():  # lrkit's states hold numbers; +-inf only as "best so far"
            if validate.is_number(getattr(initial, key)):
                validate.number(func, f"plateau.{key}", value, ScheduleError, finite=key != "best")
        return dataclasses.replace(initial, **saved)  # type: ignore[type-var]


def _checked_state(state_dict: Any, keys: Sequence[str]) -> tuple[int, int, float, bool]:
    """The step, step count, multiplier and stepped flag of a saved state, each checked (ScheduleError / ScheduleTypeError)."""
    func = "Scheduler.load_state_dict"
    validate.instance(func, "state_dict", state_dict, ScheduleError, dict, "a dict from Scheduler.state_dict()")
    missing, extra = set(keys[:4]) - set(state_dict), set(state_dict) - set(keys)
    if missing or extra:
        problem = f"lacks {sorted(missing)}" if missing else f"has unknown keys {sorted(extra)}"
        validate.fail(func, "state_dict", f"{problem} (valid: {list(keys)})", sorted(state_dict), ScheduleError)
    step = validate.integer(func, "step", state_dict["step"], ScheduleError, minimum=0)
    step_count = validate.integer(func, "step_count", state_dict["step_count"], ScheduleError, minimum=0)
    multiplier = validate.non_negative(func, "multiplier", state_dict["multiplier"], ScheduleError)
    stepped = validate.flag(func, "stepped", state_dict.get("stepped", False), ScheduleError)
    return step, step_count, multiplier, stepped


def _check_arguments(optimizer: Any, lr: Any, momentum: Any, plateau: Any) -> None:
    """Wrong types raise ScheduleTypeError (also a TypeError, as in torch)."""
    validate.instance("Scheduler", "optimizer", optimizer, ScheduleError, torch.optim.Optimizer, "a torch.optim.Optimizer")
    validate.instance("Scheduler", "lr", lr, ScheduleError, Schedule, "an lrkit schedule")
    validate.instance("Scheduler", "momentum", momentum, ScheduleError, (Schedule, type(None)), "an lrkit schedule or None")
    requirement = "a plateau-like controller (init() and update(state, metric, lr)) or None"
    validate.instance("Scheduler", "plateau", plateau, ScheduleError, (PlateauLike, type(None)), requirement)


def _momentum_key(optimizer: torch.optim.Optimizer) -> str:
    group = optimizer.param_groups[0]
    if "betas" in group:
        return "betas"
    if "momentum" in group:
        return "momentum"
    requirement = f"needs an optimizer with 'momentum' or 'betas'; {type(optimizer).__name__} has neither"
    validate.fail("Scheduler", "momentum", requirement, "schedule", ScheduleError)


def _group_scales(optimizer: torch.optim.Optimizer, given: Sequence[float] | None) -> list[float]:
    """Each param group's lr relative to the first group's (`given` checked and used when not None).

    Example:
        >>> import torch
        >>> a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        >>> _group_scales(torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1), None)
        [1.0, 0.5]
    """
    groups = optimizer.param_groups
    if given is not None:
        validate.instance("Scheduler", "group_scales", given, ScheduleError, Iterable, "a list of numbers, one per param group")
        scales = [validate.scalar("Scheduler", "group_scales", s, ScheduleError, finite=True) for s in given]
        if len(scales) != len(groups):
            validate.fail("Scheduler", "group_scales", f"must have one entry per param group ({len(groups)})", given, ScheduleError)
        if min(scales) < 0:
            validate.fail("Scheduler", "group_scales", "must be finite numbers >= 0", given, ScheduleError)
        return scales
    ratios = group_lr_ratios(optimizer)
    if ratios is None:
        lrs = [float(g.get("initial_lr", g["lr"])) for g in groups]
        validate.fail("Scheduler", "group_scales", "must be given when the first group's lr is 0 and others differ", lrs, ScheduleError)
    return ratios


def group_lr_ratios(optimizer: torch.optim.Optimizer) -> list[float] | None:
    """Each group's lr relative to the first group's; None when the first is 0 and the others differ (no ratio exists).

    torch keeps each group's lr from before any scheduler in "initial_lr" (also in a loaded optimizer
    state); the current lrs may all be 0, e.g. when saved at step 0 of a warmup, and lose the ratios.

    Example:
        >>> import torch
        >>> a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        >>> group_lr_ratios(torch.optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b]}], lr=0.1)) is None
        True
    """
    lrs = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    if all(x == lrs[0] for x in lrs):
        return [1.0] * len(lrs)
    return None if lrs[0] <= 0 else [x / lrs[0] for x in lrs]


def write_hyperparameter(group: dict[str, Any], key: str, value: float) -> None:
    """Set `group[key]`; a tensor hyperparameter is filled in place so torch.compile does not recompile.

    Example:
        >>> group = {"lr": torch.tensor(0.1)}
        >>> write_hyperparameter(group, "lr", 0.5); round(float(group["lr"]), 6)
        0.5
    """
    if isinstance(group[key], torch.Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def write_beta1(group: dict[str, Any], value: float) -> None:
    """Set Adam's beta1 in `group["betas"]` (in place for a tensor beta1).

    Example:
        >>> group = {"betas": (0.9, 0.999)}
        >>> write_beta1(group, 0.8); group["betas"]
        (0.8, 0.999)
    """
    beta1, beta2 = group["betas"]
    if isinstance(beta1, torch.Tensor):
        beta1.fill_(value)
    else:
        group["betas"] = (value, beta2)
