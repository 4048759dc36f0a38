"""lrkit.presets.torch against torch.optim.lr_scheduler: a real optimizer stepped as users step it, 1e-12 relative at every step.

torch's recursive (chainable) forms are what its schedulers write into `group["lr"]`, so that is what
the presets' closed forms are compared with, over thousands of steps (past CosineAnnealingLR's T_max,
where torch's cosine rises again). Momentum cycled by OneCycleLR / CyclicLR is compared the same way.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as tl  # noqa: E402

import lrkit  # noqa: E402
from lrkit.presets import torch as presets  # noqa: E402

LR = 0.1
RTOL = 1e-12
Make = Callable[[Any], Any]


def stepped(make: Make, steps: int, key: str = "lr") -> np.ndarray:
    """`group[key]` at steps 0 .. steps-1, torch's scheduler stepped after each optimizer step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR, momentum=0.9)
    sched = make(opt)
    out = np.empty(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notes on some schedulers
        for t in range(steps):
            out[t] = opt.param_groups[0][key]
            opt.step()
            sched.step()
    return out


def assert_same(s: lrkit.Schedule, reference: np.ndarray, rtol: float = RTOL) -> None:
    ours = s.values(np.arange(len(reference)))
    rel = np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-300)  # 1e-300: 0 == 0 divides by nothing
    worst = int(np.argmax(rel))
    assert rel[worst] <= rtol or ours[worst] == reference[worst], f"step {worst}: lrkit {ours[worst]!r} torch {reference[worst]!r}"
    assert lrkit.parse(repr(s)) == s and pickle.loads(pickle.dumps(s)) == s and lrkit.from_dict(s.to_dict()) == s


# (id, the preset, the torch scheduler on an optimizer, steps)
CASES: list[tuple[str, Callable[[], lrkit.Schedule], Make, int]] = [
    ("StepLR-30", lambda: presets.StepLR(LR, 30), lambda o: tl.StepLR(o, 30), 3000),
    ("StepLR-7-0.8", lambda: presets.StepLR(LR, 7, gamma=0.8), lambda o: tl.StepLR(o, 7, gamma=0.8), 3000),
    ("MultiStepLR", lambda: presets.MultiStepLR(LR, [100, 900, 2500]), lambda o: tl.MultiStepLR(o, [100, 900, 2500]), 3000),
    ("MultiStepLR-repeats", lambda: presets.MultiStepLR(LR, [0, 5, 5, 700], 0.5), lambda o: tl.MultiStepLR(o, [0, 5, 5, 700], 0.5), 3000),
    ("ExponentialLR", lambda: presets.ExponentialLR(LR, 0.999), lambda o: tl.ExponentialLR(o, 0.999), 3000),
    ("CosineAnnealingLR-1000", lambda: presets.CosineAnnealingLR(LR, 1000), lambda o: tl.CosineAnnealingLR(o, 1000), 4000),
    ("CosineAnnealingLR-eta", lambda: presets.CosineAnnealingLR(LR, 700, 1e-3), lambda o: tl.CosineAnnealingLR(o, 700, 1e-3), 3000),
    ("CosineAnnealingLR-37", lambda: presets.CosineAnnealingLR(LR, 37), lambda o: tl.CosineAnnealingLR(o, 37), 2000),
    ("WarmRestarts-1", lambda: presets.CosineAnnealingWarmRestarts(LR, 50), lambda o: tl.CosineAnnealingWarmRestarts(o, 50), 3000),
    (
        "WarmRestarts-2",
        lambda: presets.CosineAnnealingWarmRestarts(LR, 10, T_mult=2, eta_min=1e-3),
        lambda o: tl.CosineAnnealingWarmRestarts(o, 10, T_mult=2, eta_min=1e-3),
        3000,
    ),
    ("PolynomialLR", lambda: presets.PolynomialLR(LR, 2000, 2.0), lambda o: tl.PolynomialLR(o, 2000, 2.0), 3000),
    ("PolynomialLR-default", lambda: presets.PolynomialLR(LR), lambda o: tl.PolynomialLR(o), 100),
    ("LinearLR", lambda: presets.LinearLR(LR, 0.01, 1.0, 1500), lambda o: tl.LinearLR(o, 0.01, 1.0, 1500), 3000),
    ("LinearLR-default", lambda: presets.LinearLR(LR), lambda o: tl.LinearLR(o), 100),
    ("LinearLR-down", lambda: presets.LinearLR(LR, 1.0, 0.05, 2000), lambda o: tl.LinearLR(o, 1.0, 0.05, 2000), 3000),
    ("ConstantLR", lambda: presets.ConstantLR(LR, 0.25, 600), lambda o: tl.ConstantLR(o, 0.25, 600), 3000),
    ("ConstantLR-default", lambda: presets.ConstantLR(LR), lambda o: tl.ConstantLR(o), 100),
]
for mode in ("triangular", "triangular2", "exp_range"):
    for up, down in ((200, None), (150, 350), (1, 3)):
        CASES.append(
            (
                f"CyclicLR-{mode}-{up}-{down}",
                lambda up=up, down=down, mode=mode: presets.CyclicLR(0.01, LR, up, down, mode, gamma=0.9995),
                lambda o, up=up, down=down, mode=mode: tl.CyclicLR(o, 0.01, LR, up, down, mode, gamma=0.9995, cycle_momentum=False),
                3000,
            )
        )
for total, pct, anneal, three in (
    (3000, 0.3, "cos", False),
    (2999, 0.25, "linear", False),
    (3000, 0.4, "cos", True),
    (2501, 0.1, "linear", True),
):
    CASES.append(
        (
            f"OneCycleLR-{total}-{pct}-{anneal}-{three}",
            lambda t=total, p=pct, a=anneal, h=three: presets.OneCycleLR(LR, t, pct_start=p, anneal_strategy=a, three_phase=h),
            lambda o, t=total, p=pct, a=anneal, h=three: tl.OneCycleLR(
                o, LR, t, pct_start=p, anneal_strategy=a, three_phase=h, cycle_momentum=False
            ),
            total,
        )
    )


@pytest.mark.parametrize(("preset", "scheduler", "steps"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preset_is_the_torch_scheduler(preset: Callable[[], lrkit.Schedule], scheduler: Make, steps: int) -> None:
    assert_same(preset(), stepped(scheduler, steps))


def test_one_cycle_by_epochs_is_onecyclelr() -> None:
    s = presets.OneCycleLR(LR, epochs=7, steps_per_epoch=300, div_factor=10.0, final_div_factor=100.0)
    assert_same(s, stepped(lambda o: tl.OneCycleLR(o, LR, epochs=7, steps_per_epoch=300, div_factor=10.0, final_div_factor=100.0), 2100))


SEQUENCES: list[tuple[str, Callable[[], lrkit.Schedule], Make, int]] = [
    (
        "linear-warmup-then-cosine",
        lambda: presets.SequentialLR([presets.LinearLR(LR, 0.01, 1.0, 200), presets.CosineAnnealingLR(LR, 1800)], [200]),
        lambda o: tl.SequentialLR(o, [tl.LinearLR(o, 0.01, 1.0, 200), tl.CosineAnnealingLR(o, 1800)], [200]),
        3000,
    ),
    (
        "constant-exponential-step",
        lambda: presets.SequentialLR(
            [presets.ConstantLR(LR, 0.1, 20), presets.ExponentialLR(LR, 0.999), presets.StepLR(LR, 100, 0.5)], [20, 1500]
        ),
        lambda o: tl.SequentialLR(o, [tl.ConstantLR(o, 0.1, 20), tl.ExponentialLR(o, 0.999), tl.StepLR(o, 100, 0.5)], [20, 1500]),
        3000,
    ),
]
CHAINS: list[tuple[str, Callable[[], lrkit.Schedule], Make, int]] = [
    (
        "constant-exponential",
        lambda: presets.ChainedScheduler([presets.ConstantLR(LR, 0.1, 20), presets.ExponentialLR(LR, 0.999)], LR),
        lambda o: tl.ChainedScheduler([tl.ConstantLR(o, 0.1, 20), tl.ExponentialLR(o, 0.999)], o),
        3000,
    ),
    (
        "warmup-multistep-cosine",
        lambda: presets.ChainedScheduler(
            [presets.LinearLR(LR, 0.1, 1.0, 100), presets.MultiStepLR(LR, [1000, 2000], 0.5), presets.CosineAnnealingLR(LR, 2600)], LR
        ),
        lambda o: tl.ChainedScheduler(
            [tl.LinearLR(o, 0.1, 1.0, 100), tl.MultiStepLR(o, [1000, 2000], 0.5), tl.CosineAnnealingLR(o, 2600)], o
        ),
        2500,
    ),
]


@pytest.mark.parametrize(("preset", "scheduler", "steps"), [c[1:] for c in SEQUENCES + CHAINS], ids=[c[0] for c in SEQUENCES + CHAINS])
def test_combinations_are_torchs(preset: Callable[[], lrkit.Schedule], scheduler: Make, steps: int) -> None:
    assert_same(preset(), stepped(scheduler, steps))


@pytest.mark.parametrize(("total", "pct", "anneal", "three"), [(3000, 0.3, "cos", False), (2999, 0.45, "linear", True)])
def test_one_cycle_momentum_is_torchs(total: int, pct: float, anneal: str, three: bool) -> None:
    kw: dict[str, Any] = dict(max_lr=LR, total_steps=total, pct_start=pct, anneal_strategy=anneal, three_phase=three, base_momentum=0.8)
    m = presets.OneCycleLR_momentum(**kw)
    assert_same(m, stepped(lambda o: tl.OneCycleLR(o, **kw), total, "momentum"))


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize(("up", "down"), [(250, None), (100, 400)])
def test_cyclic_momentum_is_torchs(mode: str, up: int, down: int | None) -> None:
    kw: dict[str, Any] = dict(base_lr=0.01, max_lr=LR, step_size_up=up, step_size_down=down, mode=mode, gamma=0.9995)
    assert_same(presets.CyclicLR_momentum(**kw), stepped(lambda o: tl.CyclicLR(o, **kw), 3000, "momentum"))


def test_reduce_lr_on_plateau_is_lrkit_plateau() -> None:
    kw: dict[str, Any] = dict(mode="min", factor=0.5, patience=3, threshold=1e-3, threshold_mode="abs", cooldown=2, min_lr=1e-4)
    rng = np.random.default_rng(0)
    metrics = np.cumsum(rng.normal(0.0, 1.0, 3000)) * 0.01 + 5.0  # a noisy walk: improvements and plateaus
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    torch_plateau, plateau = tl.ReduceLROnPlateau(opt, **kw), presets.ReduceLROnPlateau(**kw)
    state, ours, theirs = plateau.init(), [], []
    for metric in metrics:
        torch_plateau.step(metric)
        state = plateau.update(state, float(metric), lr=LR)  # lrkit: the lr before the plateau scale
        ours.append(LR * state.scale)
        theirs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    assert state.changes >= 5  # the walk did trigger reductions (and min_lr bound them)


def test_the_comparison_can_fail() -> None:
    with pytest.raises(AssertionError):
        assert_same(lrkit.cosine(LR, 1000), stepped(lambda o: tl.CosineAnnealingLR(o, 1000), 2000))  # lrkit holds, torch rises


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: presets.StepLR(LR, 0), "step_size"),
        (lambda: presets.StepLR(-1.0, 3), "lr"),
        (lambda: presets.MultiStepLR(LR, [3, -1]), "milestones"),
        (lambda: presets.CosineAnnealingLR(LR, 1.5), "T_max"),
        (lambda: presets.CyclicLR(0.01, LR, scale_fn=lambda x: 1.0), "scale_fn"),  # type: ignore[arg-type]
        (lambda: presets.CyclicLR(0.01, LR, mode="cosine"), "mode"),
        (lambda: presets.CyclicLR_momentum(0.01, LR, cycle_momentum=False), "cycle_momentum"),
        (lambda: presets.OneCycleLR(LR), "total_steps"),
        (lambda: presets.ChainedScheduler([], LR), "schedulers"),
        (lambda: presets.ReduceLROnPlateau(min_lr=[0.1, 0.2]), "min_lr"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_name_the_preset_and_parameter(call: Callable[[], object], param: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=f"parameter '{param}'"):
        call()
