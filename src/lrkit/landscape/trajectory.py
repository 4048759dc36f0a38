"""Trajectories of the real `torch.optim` optimizers on a surface, driven by any lrkit schedule.

`descend` builds the optimizer on one point (float64 by default, so the
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
import json
import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit.errors import LandscapeError, bad
from lrkit.landscape.surfaces import Surface, get_surface, surface_from_dict
from lrkit.schedules import constant, parse
from lrkit.schedules.base import Schedule
from lrkit.torch.scheduler import Scheduler

Array = npt.NDArray[np.float64]
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
DEFAULT_MOMENTUM = {"sgd": 0.0, "momentum": 0.9, "nesterov": 0.9, "adagrad": None, "rmsprop": 0.0, "adam": 0.9, "adamw": 0.9}
ADAMW_WEIGHT_DECAY = 1e-2  # torch's default
DEFAULT_LIMIT = 1e6  # radius beyond which a run counts as diverged (the page uses the same)


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """What one optimizer did on one surface.

    Attributes:
        surface: the surface it ran on.
        optimizer: one of `OPTIMIZERS`.
        schedule: the lr schedule (its spec text, readable by `lrkit.parse`).
        momentum: the momentum (SGD, RMSprop) or beta1 (Adam, AdamW) used; None for AdaGrad.
        noise: the standard deviation of the Gaussian noise added to each gradient coordinate.
        seed: the noise's seed.
        points: `(n + 1, dim)` points, the start first.
        losses: `(n + 1,)` losses at those points.
        lrs: `(n,)` the lr of each step.
        diverged: the run stopped early because the loss became non-finite or the point left the ball of radius `limit`.

    Example:
        >>> t = descend("saddle", "sgd", lr=0.1, steps=5)
        >>> Trajectory.from_dict(t.to_dict()).points.tolist() == t.points.tolist()
        True
    """

    surface: Surface
    optimizer: str
    schedule: str
    momentum: float | None
    noise: float
    seed: int
    points: Array
    losses: Array
    lrs: Array
    diverged: bool

    @property
    def steps(self) -> int:
        """The number of optimizer steps taken."""
        return len(self.lrs)

    @property
    def label(self) -> str:
        """A short legend entry, e.g. `adam lr=0.01`, or `sgd peak lr=0.1` under a varying schedule."""
        if not len(self.lrs):
            lr = "lr=?"
        elif np.all(self.lrs == self.lrs[0]):
            lr = f"lr={self.lrs[0]:.3g}"
        else:
            lr = f"peak lr={self.lrs.max():.3g}"
        return f"{self.optimizer} {lr}" + (" (diverged)" if self.diverged else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `Trajectory.from_dict` reads it back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["surface"] = self.surface.to_dict()
        for key in ("points", "losses", "lrs"):
            out[key] = np.asarray(out[key]).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        """The trajectory written by `to_dict` (or read from a JSON file)."""
        missing = {f.name for f in dataclasses.fields(cls)} - set(d)
        if missing:
            raise LandscapeError(bad("Trajectory.from_dict", "d", f"lacks {sorted(missing)}", sorted(d)))
        fields = dict(d, surface=surface_from_dict(d["surface"]))
        for key in ("points", "losses", "lrs"):
            fields[key] = np.asarray(d[key], dtype=np.float64)
        fields["points"] = fields["points"].reshape(len(fields["losses"]), -1)
        return cls(**fields)

    def save(self, path: str | Path) -> Path:
        """Write the trajectory as JSON and return the path.

        Example:
            >>> import tempfile, pathlib
            >>> t = descend("quadratic", "adam", lr=0.1, steps=3)
            >>> p = t.save(pathlib.Path(tempfile.mkdtemp()) / "t.json")
            >>> Trajectory.load(p).lrs.tolist()
            [0.1, 0.1, 0.1]
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a trajectory saved by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def descend(
    surface: str | Surface,
    optimizer: str = "sgd",
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
        optimizer: one of `OPTIMIZERS`: sgd, momentum (heavy ball), nesterov, adagrad, rmsprop, adam, adamw.
        lr: a positive number, an lrkit schedule (counted in optimizer steps) or its spec text.
        steps: the number of optimizer steps.
        start: the start point (default: the surface's).
        momentum: SGD/RMSprop momentum or Adam's beta1 (default: 0.9 for momentum, nesterov, adam, adamw; 0 otherwise).
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
    m = _momentum(optimizer, momentum)
    noise = _non_negative("noise", noise)
    limit = _non_negative("limit", limit)
    x = torch.nn.Parameter(torch.tensor(x0, dtype=dtype, device=device))
    opt = make_optimizer(optimizer, [x], float(schedule(0)), m)
    points, losses, lrs, diverged = _run(surf, x, opt, Scheduler(opt, lr=schedule), steps, _noise_source(x, noise, seed), limit)
    return Trajectory(surf, optimizer, repr(schedule), m, noise, seed, points, losses, lrs, diverged)


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


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, momentum: float | None) -> torch.optim.Optimizer:
    """The torch optimizer called `name` (see `OPTIMIZERS`), single-tensor code path (the same numbers on CPU and CUDA).

    Example:
        >>> import torch
        >>> type(make_optimizer("nesterov", [torch.zeros(2, requires_grad=True)], 0.1, 0.9)).__name__
        'SGD'
    """
    m = _momentum(name, momentum)
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=m or 0.0, nesterov=name == "nesterov", foreach=False)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=m or 0.0, foreach=False)
    betas = (m if m is not None else 0.9, 0.999)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=False)
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=ADAMW_WEIGHT_DECAY, foreach=False)


def _momentum(optimizer: str, momentum: float | None) -> float | None:
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise LandscapeError(bad("descend", "optimizer", f"must be one of {', '.join(OPTIMIZERS)}", optimizer))
    if momentum is None:
        return DEFAULT_MOMENTUM[optimizer]
    if optimizer == "adagrad":
        raise LandscapeError(bad("descend", "momentum", "must be None for adagrad (it has no momentum)", momentum))
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= float(momentum) < 1.0:
        raise LandscapeError(bad("descend", "momentum", "must be a number in [0, 1)", momentum))
    if optimizer == "nesterov" and momentum == 0:
        raise LandscapeError(bad("descend", "momentum", "must be > 0 for nesterov", momentum))
    return float(momentum)


def _schedule(lr: float | Schedule | str, steps: int) -> Schedule:
    """The lr as a schedule, after checking `steps` and that every lr of the run is finite and >= 0, and not all 0."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise LandscapeError(bad("descend", "steps", "must be a positive integer", steps))
    if isinstance(lr, str):
        lr = parse(lr)
    if isinstance(lr, Schedule):
        values = lr.values(np.arange(steps))
        if not np.all(np.isfinite(values)) or values.max() <= 0:
            raise LandscapeError(bad("descend", "lr", "must be a schedule with finite values >= 0, not all 0, over the run", repr(lr)))
        return lr
    return constant(check_lr("descend", "lr", lr))


def check_lr(func: str, param: str, lr: Any) -> float:
    """A step size: a finite number > 0.

    Example:
        >>> check_lr("f", "lr", 1e-3)
        0.001
    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(float(lr)) or lr <= 0:
        raise LandscapeError(bad(func, param, "must be a finite number > 0", lr))
    return float(lr)


def _start(surf: Surface, start: Sequence[float] | None) -> list[float]:
    if start is None:
        return list(surf.start)
    values = list(start) if isinstance(start, (Sequence, np.ndarray)) and not isinstance(start, str) else None
    if values is None or len(values) != surf.dim:
        raise LandscapeError(bad("descend", "start", f"must be a point with {surf.dim} coordinates for {surf.name}", start))
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)) for v in values):
        raise LandscapeError(bad("descend", "start", "must hold finite numbers", start))
    return [float(v) for v in values]


def _non_negative(param: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or value < 0:
        raise LandscapeError(bad("descend", param, "must be a finite number >= 0", value))
    return float(value)


def _noise_source(x: torch.Tensor, std: float, seed: int) -> Callable[[], torch.Tensor] | None:
    """Seeded Gaussian gradient noise on the point's device; None when `std` is 0."""
    if std == 0:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise LandscapeError(bad("descend", "seed", "must be an integer", seed))
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    return lambda: torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device) * std
