"""Layer 3: lrkit's schedules against torch.optim.lr_scheduler on the same numbers, equal to 1e-12 relative at every step.

torch is stepped the way users step it (optimizer.step(); scheduler.step()), so its recursive formulas
are what lrkit's closed forms are compared with.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as tl  # noqa: E402

import lrkit  # noqa: E402

BASE_LR = 0.1
RTOL = 1e-12


def torch_lrs(make: Callable[[torch.optim.Optimizer], object], steps: int, lr: float = BASE_LR) -> np.ndarray:
    """The lr torch's scheduler gives at steps 0 .. steps-1."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    out = [opt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PolynomialLR / LinearLR warn about nothing that matters here
        for _ in range(steps - 1):
            opt.step()
            sched.step()  # type: ignore[attr-defined]
            out.append(opt.param_groups[0]["lr"])
    return np.array(out)


def assert_same(s: lrkit.Schedule, reference: np.ndarray) -> None:
    ours = s.values(np.arange(len(reference)))
    # relative to each step's value; 1e-300 only keeps 0 == 0 from dividing by zero
    rel = np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-300)
    worst = int(np.argmax(rel))
    assert rel[worst] <= RTOL or ours[worst] == reference[worst], f"step {worst}: lrkit {ours[worst]!r} torch {reference[worst]!r}"


@pytest.mark.parametrize(("every", "factor"), [(1, 0.9), (7, 0.5), (30, 0.1)])
def test_step_decay_is_steplr(every: int, factor: float) -> None:
    assert_same(lrkit.step_decay(BASE_LR, factor, every), torch_lrs(lambda o: tl.StepLR(o, every, factor), 300))


@pytest.mark.parametrize("milestones", [[5], [3, 30, 31, 200], [1, 2, 3]])
def test_multistep_is_multisteplr(milestones: list[int]) -> None:
    assert_same(lrkit.multistep(BASE_LR, milestones, 0.3), torch_lrs(lambda o: tl.MultiStepLR(o, milestones, 0.3), 300))


@pytest.mark.parametrize("rate", [0.99, 0.9, 0.5])
def test_exponential_is_exponentiallr(rate: float) -> None:
    assert_same(lrkit.exponential(BASE_LR, rate), torch_lrs(lambda o: tl.ExponentialLR(o, rate), 300))


@pytest.mark.parametrize(("steps", "end"), [(250, 0.0), (250, 0.001), (7, 0.05), (1, 0.0)])
def test_cosine_is_cosineannealinglr_within_its_period(steps: int, end: float) -> None:
    reference = torch_lrs(lambda o: tl.CosineAnnealingLR(o, steps, end), steps + 1)
    assert_same(lrkit.cosine(BASE_LR, steps, end=end), reference)


@pytest.mark.parametrize(("first", "mult", "end"), [(10, 1, 0.0), (7, 2, 0.001), (5, 3, 0.0), (1, 2, 0.0), (3, 1, 0.01)])
def test_sgdr_is_cosineannealingwarmrestarts(first: int, mult: int, end: float) -> None:
    reference = torch_lrs(lambda o: tl.CosineAnnealingWarmRestarts(o, first, mult, end), 1000)
    assert_same(lrkit.sgdr(BASE_LR, first, cycle_mult=mult, end=end), reference)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("half_cycle", [1, 9, 50])
def test_cyclic_is_cycliclr(mode: str, half_cycle: int) -> None:
    def make(o: torch.optim.Optimizer) -> object:
        return tl.CyclicLR(o, 0.01, 0.1, step_size_up=half_cycle, mode=mode, gamma=0.995, cycle_momentum=False)

    assert_same(lrkit.cyclic(low=0.01, high=0.1, half_cycle=half_cycle, mode=mode, gamma=0.995), torch_lrs(make, 600))


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize(("total", "pct", "div", "final"), [(257, 0.3, 25.0, 1e4), (1000, 0.25, 10.0, 100.0), (40, 0.45, 5.0, 1e3)])
def test_one_cycle_is_onecyclelr(anneal: str, three_phase: bool, total: int, pct: float, div: float, final: float) -> None:
    def make(o: torch.optim.Optimizer) -> object:
        return tl.OneCycleLR(
            o, 0.1, total_steps=total, pct_start=pct, div_factor=div, final_div_factor=final,
            anneal_strategy=anneal, three_phase=three_phase, cycle_momentum=False,
        )  # fmt: skip

    s = lrkit.one_cycle(0.1, total, pct_start=pct, div_factor=div, final_div_factor=final, anneal=anneal, three_phase=three_phase)
    assert_same(s, torch_lrs(make, total))


@pytest.mark.parametrize(("steps", "power"), [(200, 1.0), (200, 2.0), (37, 0.5)])
def test_polynomial_is_polynomiallr(steps: int, power: float) -> None:
    reference = torch_lrs(lambda o: tl.PolynomialLR(o, steps, power), steps + 50)
    assert_same(lrkit.polynomial(BASE_LR, 0.0, steps, power=power), reference)


@pytest.mark.parametrize(("start_factor", "end_factor", "iters"), [(0.25, 1.0, 40), (1.0, 0.05, 40), (1 / 3, 1.0, 5)])
def test_linear_is_linearlr(start_factor: float, end_factor: float, iters: int) -> None:
    reference = torch_lrs(lambda o: tl.LinearLR(o, start_factor, end_factor, iters), 200)
    assert_same(lrkit.linear(BASE_LR * start_factor, BASE_LR * end_factor, iters), reference)


def test_oracle_comparison_can_fail() -> None:
    """The comparison is strict enough to see a one-step shift of the schedule."""
    with pytest.raises(AssertionError):
        assert_same(lrkit.step_decay(BASE_LR, 0.5, 7), torch_lrs(lambda o: tl.StepLR(o, 8, 0.5), 50))
