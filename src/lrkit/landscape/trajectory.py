"""Trajectories of the real `torch.optim` optimizers on a surface, driven by any lrkit schedule.

`descend` builds the optimizer (an `lrkit.Optim`, its text spec, or a name of `OPTIMIZERS`) on one point (float64 by default, so the
closed forms of the quadratic hold to rounding), lets `lrkit.Scheduler` write
each step's lr, optionally adds seeded Gaussian noise to the gradient (a model
of mini-batch noise), and records every point, loss and lr in a `Trajectory`.

Example:
    >>> from lrkit.landscape import descend
    >>> t = descend("quadratic", "momentum", lr=0.05, steps=200)
    >>> t.diverged, bool(t.losses[-1] < 1e-6), len(t.points), len(t.lrs)
    (False, True, 201, 200)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit._io import JsonResult, json_array, read_array
from lrkit.errors import LandscapeError
from lrkit.landscape.surfaces import Surface, get_surface, surface_from_dict
from lrkit.optim import HELP, Optim, parse_list
from lrkit.schedules import constant, parse
from lrkit.schedules.base import Schedule
from lrkit.torch.scheduler import Scheduler

Array = npt.NDArray[np.float64]
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
"""The optimizers a trajectory can take: `lrkit.Optim` families, and "momentum" for `MOMENTUM_SGD`.

Example:
    >>> "momentum" in OPTIMIZERS, "adam" in OPTIMIZERS
    (True, True)
"""
# "momentum" is the landscape's (and its page's menu's) name for heavy-ball SGD: this is the one place it is defined
MOMENTUM_SGD = Optim("sgd", momentum=0.9)
"""What the label "momentum" means on a landscape: momentum SGD, `sgd(momentum=0.9)`.

Example:
    >>> MOMENTUM_SGD.spec
    'sgd(momentum=0.9)'
"""
DEFAULT_LIMIT = 1e6  # radius beyond which a run counts as diverged (the page uses the same)
MAX_STEPS = 100_000  # about a minute of optimizer steps on one point; the trajectory's JSON stays a few MB
"""The most optimizer steps one trajectory may take.

Example:
    >>> MAX_STEPS
    100000
"""
_KEYS = ("surface", "optimizer", "schedule", "noise", "seed", "points", "losses", "lrs", "diverged")


def landscape_optim(optimizer: Optim | str, func: str = "descend", param: str = "optimizer") -> Optim:
    """The `lrkit.Optim` that a name of `OPTIMIZERS`, a text spec or an `Optim` stands for ("momentum": `MOMENTUM_SGD`).

    Example:
        >>> landscape_optim("momentum").spec, landscape_optim("adam(weight_decay=0.1)").spec
        ('sgd(momentum=0.9)', 'adam(weight_decay=0.1)')
    """
    validate.instance(func, param, optimizer, LandscapeError, (Optim, str), f"an lrkit.Optim or {HELP}")
    if isinstance(optimizer, str) and "(" not in optimizer:
        name = validate.choice(func, param, optimizer.strip(), LandscapeError, OPTIMIZERS)
        return MOMENTUM_SGD if name == "momentum" else Optim(name)
    return Optim.of(optimizer, func, param)


def landscape_optims(text: str, func: str, param: str) -> list[Optim]:
    """Comma-separated names of `OPTIMIZERS` or text specs (the CLI's `--optimizer`), as `lrkit.Optim`s.

    Example:
        >>> [optimizer_name(o) for o in landscape_optims("sgd, momentum, adam(weight_decay=0.1)", "cli", "--optimizer")]
        ['sgd', 'momentum', 'adam(weight_decay=0.1)']
    """
    return parse_list(text, func, param, read=landscape_optim, error=LandscapeError)


def optimizer_name(optim: Optim) -> str:
    """The landscape's short name of `optim` (its legend entry): "momentum" for `MOMENTUM_SGD`, else its spec.

    Example:
        >>> optimizer_name(Optim("sgd", momentum=0.9)), optimizer_name(Optim("adamw"))
        ('momentum', 'adamw')
    """
    return "momentum" if optim == MOMENTUM_SGD else optim.spec


def with_momentum(optim: Optim, momentum: float | None, func: str = "descend") -> Optim:
    """`optim` with its momentum (Adam's beta1) replaced by `momentum`; None keeps it.

    Example:
        >>> with_momentum(Optim("rmsprop"), 0.5).spec
        'rmsprop(momentum=0.5)'
    """
    if momentum is None:
        return optim
    if optim.family == "adagrad":
        validate.fail(func, "momentum", "must be None for adagrad (it has no momentum)", momentum, LandscapeError)
    m = validate.probability(func, "momentum", momentum, LandscapeError)
    if optim.family == "nesterov" and m == 0:
        validate.fail(func, "momentum", "must be > 0 for nesterov", momentum, LandscapeError)
    return dataclasses.replace(optim, momentum=m)


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory(JsonResult):
    """What one optimizer did on one surface; saved and loaded with `to_json` / `load` (lrkit's one convention).

    Attributes:
        surface: the surface it ran on.
        optimizer: its short name (a name of `OPTIMIZERS` or an `lrkit.Optim` spec), shown in legends.
        optim: the `lrkit.Optim` that ran, `momentum=` applied.
        schedule: the lr schedule (its spec text, readable by `lrkit.parse`).
        noise: the standard deviation of the Gaussian noise added to each gradient coordinate.
        seed: the noise's seed.
        points: `(n + 1, dim)` points, the start first.
        losses: `(n + 1,)` losses at those points.
        lrs: `(n,)` the lr of each step.
        diverged: the run stopped early because the loss became non-finite or the point left the ball of radius `limit`.

    Example:
        >>> t = descend("saddle", "sgd", lr=0.1, steps=5)
        >>> Trajectory.from_json(t.to_json()).points.tolist() == t.points.tolist()
        True
    """

    error = LandscapeError

    surface: Surface
    optimizer: str
    optim: Optim
    schedule: str
    noise: float
    seed: int
    points: Array
    losses: Array
    lrs: Array
    diverged: bool

    @property
    def momentum(self) -> float | None:
        """The momentum (SGD, RMSprop) or beta1 (Adam, AdamW) used; None for AdaGrad."""
        return None if self.optim.family == "adagrad" else self.optim.momentum

    @property
    def steps(self) -> int:
        """The number of optimizer steps taken."""
        return len(self.lrs)

    @property
    def label(self) -> str:
        """A short legend entry, e.g. `adam lr=0.01`, or `sgd peak lr=0.1` under a varying schedule."""
        if not len(self.lrs):  # it diverged at its first step: the lr it would have used
            lr = f"lr={float(parse(self.schedule)(0)):.3g}"
        elif np.all(self.lrs == self.lrs[0]):
            lr = f"lr={self.lrs[0]:.3g}"
        else:
            lr = f"peak lr={self.lrs.max():.3g}"
        return f"{self.optimizer} {lr}" + (" (diverged)" if self.diverged else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `Trajectory.from_dict` reads it back ("momentum" is written for readers of the file)."""
        arrays = {key: json_array(np.asarray(getattr(self, key))) for key in ("points", "losses", "lrs")}
        return {"surface": self.surface.to_dict(), "optimizer": self.optimizer, "optim": self.optim.to_dict(), "momentum": self.momentum,
                "schedule": self.schedule, "noise": self.noise, "seed": self.seed, **arrays, "diverged": self.diverged}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        """The trajectory written by `to_dict`; files from before `lrkit.Optim` (a name and a momentum) are read too."""
        func = "Trajectory.from_dict"
        validate.instance(func, "data", data, LandscapeError, dict, "a dict")
        missing = set(_KEYS) - set(data)
        if missing:
            validate.fail(func, "data", f"lacks {sorted(missing)}", sorted(data), LandscapeError)
        if "optim" in data:
            optim = Optim.from_dict(data["optim"])
        else:
            optim = with_momentum(landscape_optim(data["optimizer"], func), data.get("momentum"), func)
        losses = np.asarray(read_array(data["losses"]), dtype=np.float64)
        points = np.asarray(read_array(data["points"]), dtype=np.float64).reshape(len(losses), -1)
        lrs = np.asarray(read_array(data["lrs"]), dtype=np.float64)
        return cls(surface_from_dict(data["surface"]), str(data["optimizer"]), optim, str(data["schedule"]), float(data["noise"]),
                   int(data["seed"]), points, losses, lrs, bool(data["diverged"]))  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """`to_json(path)` that returns the path (a short alias for scripts and the CLI).

        Example:
            >>> import tempfile, pathlib
            >>> t = descend("quadratic", "adam", lr=0.1, steps=3)
            >>> p = t.save(pathlib.Path(tempfile.mkdtemp()) / "t.json")
            >>> Trajectory.load(p).lrs.tolist()
            [0.1, 0.1, 0.1]
        """
        self.to_json(path)
        return Path(path)


def descend(
    surface: str | Surface,
    optimizer: Optim | str = "sgd",
    lr: float | Schedule | str = 0.01,
    *,
    steps: int = 100,
    start: Sequence[float] | None = None,
    momentum: float | None = None,
    noise: float = 0.0,
    seed: int = 0,
    limit: float = DEFAULT_LIMIT,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> Trajectory:
    """Run `optimizer` on `surface` from `start` for `steps` steps with lr schedule `lr`.

    Args:
        surface: a `Surface` or a built-in name (`SURFACES`).
        optimizer: an `lrkit.Optim`, its text spec (`"sgd(momentum=0.9)"`) or a name of `OPTIMIZERS`: sgd (momentum 0),
            momentum (heavy ball, `MOMENTUM_SGD`), nesterov, adagrad, rmsprop, adam, adamw (torch's defaults).
        lr: a positive number, an lrkit schedule (counted in optimizer steps) or its spec text.
        steps: the number of optimizer steps, at most `MAX_STEPS`.
        start: the start point (default: the surface's): the loss and its gradient there must be finite, and it
            must lie within `limit` of the origin.
        momentum: SGD/RMSprop momentum or Adam's beta1, replacing the optimizer's (default: the optimizer's own).
        noise: standard deviation of Gaussian noise added to every gradient coordinate.
        seed: seed of that noise.
        limit: the run stops, flagged `diverged`, once the point leaves the ball of this radius or the loss is not finite.
        dtype, device: of the optimized point.

    Example:
        >>> import lrkit
        >>> t = descend("rosenbrock", "adam", lr=lrkit.cosine(start=0.05, steps=300), steps=300)
        >>> bool(t.losses[-1] < t.losses[0]), round(float(t.lrs[-1]), 7)
        (True, 1.4e-06)
    """
    surf = get_surface(surface)
    schedule = _schedule(lr, steps)
    x0 = _start(surf, start)
    named = landscape_optim(optimizer)
    optim = with_momentum(named, momentum)
    noise = validate.non_negative("descend", "noise", noise, LandscapeError)
    limit = validate.non_negative("descend", "limit", limit, LandscapeError)
    seed = validate.seed("descend", "seed", seed, LandscapeError)
    x = torch.nn.Parameter(torch.tensor(x0, dtype=dtype, device=device))
    _check_start(surf, x, limit)
    opt = optim.to_torch([x], float(schedule(0)), foreach=False)  # the single-tensor path: the same numbers on CPU and CUDA
    points, losses, lrs, diverged = _run(surf, x, opt, Scheduler(opt, lr=schedule), steps, _noise_source(x, noise, seed), limit)
    return Trajectory(surf, optimizer_name(named), optim, repr(schedule), noise, seed, points, losses, lrs, diverged)


def _run(
    surf: Surface,
    x: torch.Tensor,
    opt: torch.optim.Optimizer,
    sched: Scheduler,
    steps: int,
    noise: Callable[[], torch.Tensor] | None,
    limit: float,
) -> tuple[Array, Array, Array, bool]:
    """The loop: record the point and loss, stop on divergence, else take one step."""
    points: list[torch.Tensor] = []
    losses: list[float] = []
    lrs: list[float] = []
    for t in range(steps + 1):
        opt.zero_grad()
        loss = surf(x)
        value = float(loss.item())
        if not math.isfinite(value) or not bool(torch.isfinite(x).all()):
            return _arrays(points, losses, lrs, True)
        points.append(x.detach().clone())
        losses.append(value)
        if float(x.detach().norm()) > limit:
            return _arrays(points, losses, lrs, True)
        if t == steps:
            break
        torch.autograd.backward(loss)
        if noise is not None and x.grad is not None:
            x.grad.add_(noise())
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return _arrays(points, losses, lrs, False)


def _arrays(points: list[torch.Tensor], losses: list[float], lrs: list[float], diverged: bool) -> tuple[Array, Array, Array, bool]:
    stacked = torch.stack(points).cpu().double().numpy()
    return stacked, np.asarray(losses, dtype=np.float64), np.asarray(lrs[: len(losses) - 1], dtype=np.float64), diverged


def _schedule(lr: float | Schedule | str, steps: int) -> Schedule:
    """The lr as a schedule, after checking `steps` and that every lr of the run is finite and >= 0, and not all 0."""
    check_steps("descend", steps)
    if isinstance(lr, str):
        lr = parse(lr)
    if isinstance(lr, Schedule):
        values = lr.values(np.arange(steps))
        if not np.all(np.isfinite(values)) or values.max() <= 0:
            validate.fail("descend", "lr", "must be a schedule with finite values >= 0, not all 0, over the run", repr(lr), LandscapeError)
        return lr
    return constant(validate.positive("descend", "lr", lr, LandscapeError))


def check_steps(func: str, steps: Any, param: str = "steps") -> int:
    """The number of optimizer steps of a trajectory: 1 to `MAX_STEPS`.

    Example:
        >>> check_steps("descend", 200)
        200
    """
    count = validate.integer(func, param, steps, LandscapeError)
    if count > MAX_STEPS:
        validate.fail(func, param, f"must be at most {MAX_STEPS} (a trajectory is kept in memory and in its JSON)", count, LandscapeError)
    return count


def _start(surf: Surface, start: Sequence[float] | None) -> list[float]:
    if start is None:
        return list(surf.start)
    values = validate.sequence("descend", "start", start.tolist() if isinstance(start, np.ndarray) else start, LandscapeError)
    if len(values) != surf.dim:
        validate.fail("descend", "start", f"must be a point with {surf.dim} coordinates for {surf.name}", start, LandscapeError)
    return [validate.number("descend", "start", v, LandscapeError) for v in values]


def _check_start(surf: Surface, x: torch.Tensor, limit: float) -> None:
    """A start where the run can begin: within `limit`, the loss and its gradient finite (no overflow at the first step)."""
    where = tuple(float(v) for v in x.detach().cpu())
    loss = surf(x)
    (grad,) = torch.autograd.grad(loss, x)
    if not (math.isfinite(float(loss.item())) and bool(torch.isfinite(grad).all())):
        why = f"must be a point where the loss and its gradient are finite ({surf.name} gives loss {float(loss.item()):g} there)"
        validate.fail("descend", "start", why, where, LandscapeError)
    if float(x.detach().norm()) > limit:
        validate.fail("descend", "start", f"must lie within limit={limit:g} of the origin", where, LandscapeError)


def _noise_source(x: torch.Tensor, std: float, seed: int) -> Callable[[], torch.Tensor] | None:
    """Seeded Gaussian gradient noise on the point's device; None when `std` is 0."""
    if std == 0:
        return None
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return lambda: torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) * std
