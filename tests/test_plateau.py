"""lrkit.Plateau: exactly ReduceLROnPlateau on a constant schedule, composition, state, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lrkit
from lrkit.control.plateau import Plateau, PlateauState


def _opt(lr: float) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrkit_lrs(kwargs: dict[str, Any], lr: float, metrics: list[float]) -> list[float]:
    opt = _opt(lr)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(lr), plateau=Plateau(**kwargs))
    out = []
    for m in metrics:
        sched.observe(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def _torch_lrs(kwargs: dict[str, Any], lr: float, metrics: list[float]) -> list[float]:
    opt = _opt(lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


# metric streams with long plateaus and exact repeats, so reductions, cooldowns and thresholds all trigger
_metric = st.sampled_from([1.0, 0.9, 0.5, 0.4999, 0.25, 2.0, -1.0, -0.5, 0.0]) | st.floats(-10, 10, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    factor=st.sampled_from([0.1, 0.5, 0.9, 0.3]),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    threshold=st.sampled_from([0.0, 1e-4, 0.01, 0.1]),
    min_lr=st.sampled_from([0.0, 1e-3, 0.01, 0.05]),
    eps=st.sampled_from([1e-8, 0.0, 1e-3]),
    lr=st.sampled_from([0.1, 1.0, 0.03]),
    metrics=st.lists(_metric, min_size=1, max_size=40),
)
def test_constant_schedule_matches_torch_reduce_lr_on_plateau(lr: float, metrics: list[float], **kwargs: Any) -> None:
    ours, theirs = _lrkit_lrs(kwargs, lr, metrics), _torch_lrs(kwargs, lr, metrics)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)


def test_default_arguments_match_torch() -> None:
    metrics = [1.0] + [0.99999] * 30 + [0.5] * 30
    assert _lrkit_lrs({}, 0.1, metrics) == pytest.approx(_torch_lrs({}, 0.1, metrics), rel=1e-12)
    assert min(_lrkit_lrs({}, 0.1, metrics)) < 0.1  # the stream did trigger reductions


def test_composes_with_warmup_cosine() -> None:
    schedule = lrkit.warmup(lrkit.cosine(start=0.1, steps=90), steps=10)
    opt = _opt(1.0)
    sched = lrkit.Scheduler(opt, lr=schedule, plateau=Plateau(factor=0.5, patience=1))
    scales = []
    for step in range(100):
        opt.step()
        sched.step()
        if step % 10 == 9:
            sched.observe(1.0)  # never improves after the first evaluation
        scales.append(sched.plateau_state.scale)  # type: ignore[union-attr]
        assert opt.param_groups[0]["lr"] == pytest.approx(schedule(sched.last_epoch) * scales[-1], rel=1e-12)
    assert scales[-1] == pytest.approx(0.5**4)  # evaluations 3, 5, 7, 9 each halve


def test_factor_above_one_raises_lr_up_to_max_lr() -> None:
    opt = _opt(0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=Plateau(factor=2.0, patience=0, max_lr=0.5, mode="max"))
    lrs = []
    for acc in [0.3, 0.3, 0.3, 0.3, 0.3, 0.9, 0.9]:
        sched.observe(acc)
        lrs.append(round(opt.param_groups[0]["lr"], 12))
    assert lrs == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]


def test_min_lr_and_max_lr_compare_with_the_unscaled_lr() -> None:
    p = Plateau(factor=0.1, patience=0, min_lr=0.02)
    s = p.update(p.update(p.init(), 1.0, lr=0.1), 1.0, lr=0.1)
    assert s.scale * 0.1 == pytest.approx(0.02)
    assert p.update(s, 1.0, lr=0.1).scale == s.scale  # already at min_lr: no further change


def test_update_is_pure() -> None:
    p = Plateau(patience=0)
    s0 = p.init()
    s1 = p.update(s0, 1.0, lr=0.1)
    assert s0 == PlateauState(best=math.inf) and s1.best == 1.0 and s1.evaluations == 1


def _run(sched: lrkit.Scheduler, opt: torch.optim.Optimizer, metrics: list[float]) -> list[float]:
    lrs = []
    for m in metrics:
        opt.step()
        sched.step()
        sched.observe(m)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@settings(max_examples=30, deadline=None)
@given(metrics=st.lists(st.sampled_from([1.0, 0.9, 0.8, 0.95]), min_size=2, max_size=30), data=st.data())
def test_resumed_run_decides_exactly_as_unbroken(metrics: list[float], data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(metrics) - 1))
    make = lambda opt: lrkit.Scheduler(opt, lr=lrkit.cosine(start=0.1, steps=40), plateau=Plateau(patience=1, cooldown=1))  # noqa: E731
    opt = _opt(0.1)
    unbroken = _run(make(opt), opt, metrics)
    opt1 = _opt(0.1)
    first = make(opt1)
    head = _run(first, opt1, metrics[:cut])
    saved = first.state_dict()
    opt2 = _opt(0.1)
    resumed = make(opt2)
    resumed.load_state_dict(saved)
    assert resumed.plateau_state == first.plateau_state
    assert head + _run(resumed, opt2, metrics[cut:]) == unbroken


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factor": 1.0},
        {"factor": 0.0},
        {"factor": -0.5},
        {"factor": float("nan")},
        {"patience": -1},
        {"patience": 1.5},
        {"cooldown": -2},
        {"mode": "minimum"},
        {"threshold_mode": "relative"},
        {"threshold": -0.1},
        {"min_lr": -1.0},
        {"factor": 2.0},  # rising without a bound
        {"factor": 2.0, "max_lr": 0.1, "min_lr": 0.2},
        {"eps": -1.0},
        {"threshold": 1.0},  # rel: metric < best * 0 never holds for a loss
        {"threshold": 2.0},
        {"threshold": 1.0, "mode": "max"},
        {"threshold": float("inf"), "threshold_mode": "abs"},
    ],
)
def test_bad_arguments_raise_control_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(lrkit.ControlError, match="Plateau: parameter"):
        Plateau(**kwargs)


def test_unknown_mode_lists_valid_ones() -> None:
    with pytest.raises(lrkit.ControlError, match="'min', 'max'"):
        Plateau(mode="lowest")


@pytest.mark.parametrize("metric", [float("nan"), float("inf"), "0.5", None, True])
def test_observe_rejects_non_finite_or_non_numbers_and_keeps_state(metric: Any) -> None:
    opt = _opt(0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=Plateau(patience=0))
    sched.observe(1.0)
    before = sched.plateau_state
    with pytest.raises(lrkit.LrkitValueError):
        sched.observe(metric)
    with pytest.raises(lrkit.ControlError):
        Plateau().update(Plateau().init(), metric, lr=0.1)
    assert sched.plateau_state == before


def test_observe_accepts_a_scalar_tensor() -> None:
    opt = _opt(0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=Plateau(patience=0))
    sched.observe(torch.tensor(1.0))
    sched.observe(torch.tensor(1.0))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_relative_threshold_must_be_below_one_and_abs_may_be_larger() -> None:
    """Before: Plateau(threshold=2.0) was accepted and could never register an improvement."""
    with pytest.raises(lrkit.ControlError, match=r"^Plateau: parameter 'threshold' must be < 1 in threshold_mode 'rel'.*got 2\.0$"):
        Plateau(threshold=2.0)
    p = Plateau(threshold=2.0, threshold_mode="abs", patience=0)
    assert p.update(p.update(p.init(), 10.0, lr=0.1), 7.0, lr=0.1).best == 7.0  # improved by 3 > 2
    assert Plateau(threshold=0.99).threshold == 0.99
