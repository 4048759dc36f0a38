"""`lrkit.swa_schedule` against torch's SWALR taking over from a main scheduler, and `Averaging`'s plan.

Both sides drive a real torch optimizer on a real model for thousands of steps; SWALR is
built at `swa_start` (the handover) and stepped once per optimizer step.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import SWALR

import lrkit
from lrkit.schedules import REGISTRY, Averaging, SWASchedule

STEPS, SWA_START = 3000, 1200


def _train(param: torch.Tensor, opt: torch.optim.Optimizer, after_step: Callable[[int], None]) -> list[float]:
    """The lr each optimizer step used, over STEPS real steps of `opt` on the quadratic 0.5 |param - 1|^2."""
    used = []
    for t in range(STEPS):
        used.append(float(opt.param_groups[0]["lr"]))
        param.grad = param.detach() - 1.0  # the quadratic's gradient, without autograd's cost per step
        opt.step()
        after_step(t)
    return used


def _param() -> torch.Tensor:
    return torch.zeros(4, requires_grad=True)


COSINE = lrkit.cosine(start=0.05, steps=STEPS)
COSINE_TABLE = COSINE.values(np.arange(STEPS + 1)).tolist()


# (main schedule in lrkit, the same main schedule as a torch scheduler)
MAINS: dict[str, tuple[lrkit.Schedule, Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]]] = {
    "cosine": (
        COSINE,
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: COSINE_TABLE[t] / 0.05),
    ),
    "one_cycle": (
        lrkit.one_cycle(peak=0.05, total_steps=STEPS),
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS, cycle_momentum=False),
    ),
    "step": (
        lrkit.step_decay(start=0.05, factor=0.5, every=400),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=400, gamma=0.5),
    ),
}


def _torch_lrs(main: str, swa_lr: float, anneal_steps: int, anneal: str) -> list[float]:
    param = _param()
    opt = torch.optim.SGD([param], lr=0.05, momentum=0.9)
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {"main": MAINS[main][1](opt)}

    def after_step(t: int) -> None:
        if t + 1 <= SWA_START:
            schedulers["main"].step()
        if t + 1 == SWA_START:  # the handover: SWALR starts from the lr the main scheduler set for step swa_start
            schedulers["swa"] = SWALR(opt, swa_lr=swa_lr, anneal_epochs=anneal_steps, anneal_strategy=anneal)  # type: ignore[arg-type]
        elif t + 1 > SWA_START:
            schedulers["swa"].step()

    return _train(param, opt, after_step)


def _lrkit_lrs(s: lrkit.Schedule) -> list[float]:
    param = _param()
    opt = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    sched = lrkit.Scheduler(opt, lr=s)
    return _train(param, opt, lambda t: sched.step())


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("main", sorted(MAINS))
@pytest.mark.parametrize("anneal_steps", [0, 1, 500])
def test_equals_swalr_taking_over_from_the_main_scheduler(anneal: str, main: str, anneal_steps: int) -> None:
    s = lrkit.schedules.swa_schedule(MAINS[main][0], swa_start=SWA_START, swa_lr=0.004, anneal_steps=anneal_steps, anneal=anneal)
    want = _torch_lrs(main, 0.004, anneal_steps, anneal)
    got = _lrkit_lrs(s)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(s.values(np.arange(STEPS)), want, rtol=1e-12, atol=0)
    assert want[SWA_START + anneal_steps :] == pytest.approx([0.004] * (STEPS - SWA_START - anneal_steps), rel=1e-12)


def test_the_issue_formula_at_every_step() -> None:
    main = lrkit.cosine(start=0.1, steps=1000)
    for anneal, shape in (("cos", lambda x: (1 - math.cos(math.pi * x)) / 2), ("linear", lambda x: x)):
        s = lrkit.schedules.swa_schedule(main, swa_start=400, swa_lr=0.02, anneal_steps=150, anneal=anneal)
        for t in range(0, 2000, 7):
            a = shape(min(1.0, (t - 400) / 150))
            want = main(t) if t < 400 else 0.02 * a + main(400) * (1 - a)
            assert s(t) == pytest.approx(want, rel=1e-13, abs=1e-16), (anneal, t)


def test_a_rising_anneal_and_swa_start_zero() -> None:
    s = lrkit.schedules.swa_schedule(lrkit.constant(0.01), swa_start=0, swa_lr=0.05, anneal_steps=4, anneal="linear")
    assert s.values(range(6)).tolist() == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05, 0.05], rel=1e-12)


def test_is_a_registered_pure_schedule() -> None:
    s = lrkit.schedules.swa_schedule(lrkit.warmup(lrkit.cosine(0.1, 900), steps=100), swa_start=700, swa_lr=0.01, anneal_steps=50)
    assert REGISTRY["swa_schedule"] is SWASchedule is lrkit.schedules.swa_schedule
    for back in (pickle.loads(pickle.dumps(s)), lrkit.parse(repr(s)), lrkit.from_dict(json.loads(json.dumps(s.to_dict())))):
        assert back == s and hash(back) == hash(s)
    steps = np.array([0, 5, 699, 700, 701, 749, 750, 10**9])
    assert s.values(steps).tolist() == [s(int(t)) for t in steps]
    assert s(10**12) == s(750) == pytest.approx(0.01)  # the last value holds
    assert repr(s) == "swa_schedule(warmup(cosine(start=0.1, steps=900), steps=100), swa_start=700, swa_lr=0.01, anneal_steps=50)"


@pytest.mark.parametrize(
    ("param", "value"),
    [("schedule", 0.1), ("swa_start", -1), ("swa_start", 1.5), ("swa_lr", -0.1), ("swa_lr", math.nan), ("anneal_steps", -1),
     ("anneal_steps", "5"), ("anneal", "cosine"), ("swa_start", 2**63)],
)  # fmt: skip
def test_rejects_bad_arguments(param: str, value: object) -> None:
    good = {"schedule": lrkit.constant(0.1), "swa_start": 10, "swa_lr": 0.01, "anneal_steps": 5, "anneal": "cos"}
    with pytest.raises(lrkit.ScheduleError, match=rf"^swa_schedule: parameter '{param}' .*{value!r}"[:60]):
        lrkit.schedules.swa_schedule(**{**good, param: value})


# -- Averaging: which steps enter, and by how much ------------------------------------------------
def test_averaging_plan_steps_and_weights() -> None:
    plan = Averaging(start=10, every=5)
    assert np.flatnonzero(plan.due(np.arange(31))).tolist() == [10, 15, 20, 25, 30]
    assert plan.weights(np.arange(4)).tolist() == [1.0, 0.5, 1 / 3, 0.25]
    assert Averaging(kind="ema", decay=0.9).weights([0, 1, 2]).tolist() == [1.0, pytest.approx(0.1), pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("param", "value"), [("kind", "mean"), ("start", -1), ("every", 0), ("every", 1.5), ("decay", 1.5), ("decay", math.nan)]
)
def test_averaging_rejects_bad_arguments(param: str, value: object) -> None:
    with pytest.raises(lrkit.ScheduleError, match=rf"^Averaging: parameter '{param}'"):
        Averaging(**{param: value})  # type: ignore[arg-type]
