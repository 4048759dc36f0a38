"""lrkit.protocols: lrkit's controllers satisfy them, and a user's own controller drives lrkit.Scheduler like lrkit's."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import lrkit
from lrkit.control import early_stopping as pure
from lrkit.protocols import PlateauLike, ScaleState, StopperLike, StopState


def test_lrkit_controllers_satisfy_the_protocols() -> None:
    plateau = lrkit.Plateau()
    assert isinstance(plateau, PlateauLike) and isinstance(plateau.init(), ScaleState)
    assert isinstance(plateau.update(plateau.init(), 1.0, 0.1), ScaleState)
    for stopper in (lrkit.EarlyStopping(), pure.EarlyStopping()):
        assert isinstance(stopper, StopperLike) and isinstance(stopper.init(), StopState)
        assert isinstance(stopper.update(stopper.init(), 1.0), StopState)


def test_objects_without_the_methods_do_not() -> None:
    assert not isinstance(object(), PlateauLike) and not isinstance(lrkit.constant(0.1), StopperLike)
    assert not isinstance(1.0, ScaleState) and not isinstance(lrkit.Plateau().init(), StopState)


class Halving(NamedTuple):
    """A user's state: not a dataclass, just the fields the protocol asks for."""

    scale: float
    seen: int


class HalveEveryOther:
    """A user's plateau-like controller: halve the lr at every second evaluation, whatever the metric."""

    def init(self) -> Halving:
        return Halving(1.0, 0)

    def update(self, state: Halving, metric: float, lr: float) -> Halving:
        seen = state.seen + 1
        return Halving(state.scale * (0.5 if seen % 2 == 0 else 1.0), seen)


def _train(sched: lrkit.Scheduler, opt: torch.optim.Optimizer, steps: int, observe_every: int) -> list[float]:
    lrs = []
    for step in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if (step + 1) % observe_every == 0:
            sched.observe(torch.tensor(1.0))
    return lrs


def test_a_users_plateau_like_object_drives_the_scheduler_to_the_closed_form() -> None:
    assert isinstance(HalveEveryOther(), PlateauLike)
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    schedule = lrkit.linear(start=0.1, end=0.0, steps=100)
    sched = lrkit.Scheduler(opt, lr=schedule, plateau=HalveEveryOther())
    lrs = _train(sched, opt, steps=40, observe_every=5)
    # the lr at step t is schedule(t) * 0.5 ** (evaluations so far // 2), evaluations after steps 5, 10, ...
    expected = [0.1 * (1 - t / 100) * 0.5 ** ((t // 5) // 2) for t in range(40)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert sched.plateau_state == Halving(0.5**4, 8)


def test_a_users_state_round_trips_through_the_scheduler_state_dict() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.2), plateau=HalveEveryOther())
    _train(sched, opt, steps=6, observe_every=3)
    other = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    resumed = lrkit.Scheduler(other, lr=lrkit.constant(0.2), plateau=HalveEveryOther())
    resumed.load_state_dict(sched.state_dict())
    assert resumed.plateau_state == Halving(0.5, 2) and resumed.get_last_lr() == pytest.approx([0.1], rel=1e-15)


def test_an_object_that_is_not_plateau_like_is_a_schedule_type_error() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    with pytest.raises(lrkit.ScheduleError, match=r"^Scheduler: parameter 'plateau' must be a plateau-like controller") as info:
        lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=0.5)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
