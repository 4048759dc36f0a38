"""lrkit.presets.hf against transformers.optimization: HF's LambdaLR schedulers stepping a real torch optimizer.

1e-12 relative at every step over thousands of steps, past num_training_steps too (HF's cosines rise there).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hf = pytest.importorskip("transformers.optimization")

import lrkit  # noqa: E402
from lrkit.presets import hf as presets  # noqa: E402

LR = 3e-4
RTOL = 1e-12


def stepped(make: Callable[[Any], Any], steps: int) -> np.ndarray:
    """The lr HF's scheduler gives at steps 0 .. steps-1."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = make(opt)
    out = np.empty(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(steps):
            out[t] = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
    return out


def assert_same(s: lrkit.Schedule, reference: np.ndarray) -> None:
    ours = s.values(np.arange(len(reference)))
    rel = np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-300)
    worst = int(np.argmax(rel))
    assert rel[worst] <= RTOL or ours[worst] == reference[worst], f"step {worst}: lrkit {ours[worst]!r} HF {reference[worst]!r}"
    assert lrkit.parse(repr(s)) == s and pickle.loads(pickle.dumps(s)) == s and lrkit.from_dict(s.to_dict()) == s


N = 3000
# (HF's function name, arguments after the optimizer)
CASES: list[tuple[str, dict[str, Any]]] = [
    ("get_constant_schedule", {}),
    ("get_constant_schedule_with_warmup", {"num_warmup_steps": 300}),
    ("get_constant_schedule_with_warmup", {"num_warmup_steps": 0}),
    ("get_linear_schedule_with_warmup", {"num_warmup_steps": 100, "num_training_steps": 2000}),
    ("get_linear_schedule_with_warmup", {"num_warmup_steps": 0, "num_training_steps": 2999}),
    ("get_cosine_schedule_with_warmup", {"num_warmup_steps": 100, "num_training_steps": 1500}),
    ("get_cosine_schedule_with_warmup", {"num_warmup_steps": 0, "num_training_steps": 1000, "num_cycles": 1.3}),
    ("get_cosine_schedule_with_warmup", {"num_warmup_steps": 250, "num_training_steps": 2000, "num_cycles": 2.0}),
    ("get_cosine_with_hard_restarts_schedule_with_warmup", {"num_warmup_steps": 100, "num_training_steps": 2500}),
    ("get_cosine_with_hard_restarts_schedule_with_warmup", {"num_warmup_steps": 200, "num_training_steps": 2600, "num_cycles": 4}),
    ("get_cosine_with_hard_restarts_schedule_with_warmup", {"num_warmup_steps": 0, "num_training_steps": 2000, "num_cycles": 8}),
    ("get_polynomial_decay_schedule_with_warmup", {"num_warmup_steps": 100, "num_training_steps": 2000}),
    ("get_polynomial_decay_schedule_with_warmup", {"num_warmup_steps": 0, "num_training_steps": 2500, "lr_end": 1e-5, "power": 2.0}),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 400}),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 0}),
    ("get_inverse_sqrt_schedule", {"num_warmup_steps": 100, "timescale": 1000}),
    ("get_cosine_with_min_lr_schedule_with_warmup", {"num_warmup_steps": 100, "num_training_steps": 1500, "min_lr": 1e-5}),
    (
        "get_cosine_with_min_lr_schedule_with_warmup",
        {"num_warmup_steps": 0, "num_training_steps": 1200, "min_lr_rate": 0.1, "num_cycles": 1.5},
    ),
    ("get_cosine_with_min_lr_schedule_with_warmup_lr_rate", {"num_warmup_steps": 100, "num_training_steps": 1500, "min_lr_rate": 0.1}),
    (
        "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
        {"num_warmup_steps": 50, "num_training_steps": 2000, "min_lr": 1e-5, "warmup_lr_rate": 0.05, "num_cycles": 0.75},
    ),
    ("get_cosine_with_min_lr_schedule_with_warmup_lr_rate", {"num_warmup_steps": 1, "num_training_steps": 1000, "min_lr_rate": 0.0}),
]
for warmup_type in ("linear", "cosine", "1-sqrt"):
    for decay_type in ("linear", "cosine", "1-sqrt"):
        CASES.append(("get_wsd_schedule", {"num_warmup_steps": 200, "num_decay_steps": 700, "num_training_steps": 2500,
                                           "warmup_type": warmup_type, "decay_type": decay_type}))  # fmt: skip
CASES += [
    (
        "get_wsd_schedule",
        {"num_warmup_steps": 300, "num_decay_steps": 500, "num_stable_steps": 1000, "min_lr_ratio": 0.1, "warmup_type": "cosine"},
    ),
    (
        "get_wsd_schedule",
        {"num_warmup_steps": 0, "num_decay_steps": 900, "num_training_steps": 2000, "min_lr_ratio": 0.05, "num_cycles": 1.0},
    ),
    ("get_wsd_schedule", {"num_warmup_steps": 100, "num_decay_steps": 0, "num_training_steps": 2000, "decay_type": "1-sqrt"}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_preset_is_hfs_schedule(name: str, kwargs: dict[str, Any]) -> None:
    assert_same(getattr(presets, name)(LR, **kwargs), stepped(lambda o: getattr(hf, name)(o, **kwargs), N))


def test_every_hf_schedule_has_a_preset() -> None:
    names = {f.__name__ for f in hf.TYPE_TO_SCHEDULER_FUNCTION.values()} - {"get_greedy_schedule"}  # GreedyLR: no schedule
    assert names <= set(dir(presets))


def test_reduce_on_plateau_is_lrkit_plateau() -> None:
    kw: dict[str, Any] = dict(mode="max", factor=0.5, patience=2, threshold=0.01, cooldown=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    theirs, plateau = hf.get_reduce_on_plateau_schedule(opt, **kw), presets.get_reduce_on_plateau_schedule(**kw)
    state = plateau.init()
    accuracy = 1.0 - np.exp(-np.arange(2000) / 300.0) + np.random.default_rng(1).normal(0.0, 0.01, 2000)
    for metric in accuracy:
        theirs.step(metric)
        state = plateau.update(state, float(metric), lr=LR)
        assert LR * state.scale == pytest.approx(opt.param_groups[0]["lr"], rel=RTOL)
    assert state.changes >= 3


def test_the_comparison_can_fail() -> None:
    kwargs = {"num_warmup_steps": 100, "num_training_steps": 1500}
    with pytest.raises(AssertionError):  # lrkit's own warmup + cosine holds 0 where HF's rises again
        assert_same(lrkit.warmup(lrkit.cosine(LR, 1400), steps=100), stepped(lambda o: hf.get_cosine_schedule_with_warmup(o, **kwargs), N))


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: presets.get_linear_schedule_with_warmup(LR, 100, 100), "num_training_steps"),
        (lambda: presets.get_cosine_with_hard_restarts_schedule_with_warmup(LR, 0, 1000, num_cycles=3), "num_cycles"),
        (lambda: presets.get_polynomial_decay_schedule_with_warmup(LR, 0, 100, lr_end=1.0), "lr_end"),
        (lambda: presets.get_wsd_schedule(LR, 10, 10), "num_training_steps"),
        (lambda: presets.get_wsd_schedule(LR, 10, 10, 100, warmup_type="exp"), "warmup_type"),
        (lambda: presets.get_cosine_with_min_lr_schedule_with_warmup(LR, 0, 100), "min_lr"),
        (lambda: presets.get_cosine_with_min_lr_schedule_with_warmup(LR, 0, 100, min_lr=0.0, min_lr_rate=0.0), "min_lr"),
        (lambda: presets.get_cosine_with_min_lr_schedule_with_warmup_lr_rate(LR, 0, 100, min_lr_rate=0.0), "num_warmup_steps"),
    ],
)
def test_bad_arguments_name_the_preset_and_parameter(call: Callable[[], object], param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=f"parameter '{param}'"):
        call()
