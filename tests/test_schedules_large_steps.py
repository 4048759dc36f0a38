"""Issue 12: periodic schedules keep their phase at any step, steps and durations have a documented range,
and specs nested too deeply are refused with a clear ScheduleError (never a RecursionError)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

import lrkit
from lrkit.schedules.base import MAX_DEPTH, MAX_STEP

RunCli = Callable[..., Result]
BIG = 2**62


def cyclic_exact(t: int, low: float, high: float, half: int, mode: str = "triangular", gamma: float = 1.0) -> float:
    """Smith's triangle from Python integers (no float step ever)."""
    done, place = divmod(t, 2 * half)
    height = (high - low) * min(place, 2 * half - place) / half
    if mode == "triangular2":
        height = height * 2.0 ** -min(done, 1100)
    elif mode == "exp_range":
        height = height * gamma**t
    return low + height


def test_issue_examples_keep_their_phase_at_2_to_the_62() -> None:
    assert lrkit.cyclic(low=0.01, high=0.1, half_cycle=10)(BIG) == pytest.approx(0.046, rel=1e-12)
    want = 0.05 * (1 + math.cos(math.pi * (BIG % 10) / 10))  # step 4 of a 10-step cycle
    assert lrkit.sgdr(start=0.1, first_cycle=10)(BIG) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.0655, abs=1e-4)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("half", [1, 7, 10, 2000])
def test_cyclic_every_mode_is_exact_far_out_in_call_and_values(mode: str, half: int) -> None:
    s = lrkit.cyclic(low=0.01, high=0.1, half_cycle=half, mode=mode)
    steps = [BIG + k for k in range(0, 3 * half, max(1, half // 3))] + [MAX_STEP, 2**53 + 1, 10**18 + 3]
    want = [cyclic_exact(t, 0.01, 0.1, half, mode) for t in steps]
    np.testing.assert_allclose(s.values(np.array(steps, dtype=np.int64)), want, rtol=1e-12)
    assert [s(t) for t in steps] == s.values(np.array(steps, dtype=np.int64)).tolist()


@pytest.mark.parametrize("decay", [1.0, 0.999])
def test_sgdr_without_cycle_growth_is_exact_far_out(decay: float) -> None:
    s = lrkit.sgdr(start=0.1, first_cycle=10, end=0.001, peak_decay=decay)
    for t in (BIG, BIG + 3, MAX_STEP, 2**53 + 7):
        i, pos = divmod(t, 10)
        peak = 0.1 * decay**i
        assert s(t) == pytest.approx(0.001 + (peak - 0.001) * (1 + math.cos(math.pi * pos / 10)) / 2, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("mult", [2, 3])
def test_sgdr_with_whole_cycle_mult_restarts_exactly_at_far_boundaries(mult: int) -> None:
    s = lrkit.sgdr(start=1.0, first_cycle=7, cycle_mult=mult)
    boundaries = [7 * (mult**i - 1) // (mult - 1) for i in range(1, 80) if 7 * (mult**i - 1) // (mult - 1) <= MAX_STEP]
    assert s.values(boundaries).tolist() == [1.0] * len(boundaries)
    for i, b in enumerate(boundaries[-5:]):
        span = 7 * mult ** (len(boundaries) - 5 + i)
        assert s(b - 1) == pytest.approx((1 + math.cos(math.pi * (span // mult - 1) / (span // mult))) / 2, abs=1e-15)


def sgdr_decimal(t: int, start: float, first: int, mult: float, end: float) -> float:
    """SGDR walked cycle by cycle in 50-digit decimal arithmetic: the exact reference."""
    getcontext().prec = 50
    m, begin, span = Decimal(mult), Decimal(0), Decimal(first)
    while begin + span <= t:
        begin, span = begin + span, span * m
    phase = float((Decimal(t) - begin) / span)
    return end + (start - end) * (1 + math.cos(math.pi * phase)) / 2


@pytest.mark.parametrize("mult", [1.0005, 1.001, 1.01])
def test_sgdr_with_cycle_mult_near_one_holds_to_1e_5_of_the_peak_at_step_1e9(mult: float) -> None:
    s = lrkit.sgdr(start=0.1, first_cycle=1000, cycle_mult=mult)
    steps = [10**9, 10**9 + 1, 10**9 + 12_345, 999_999_999]
    want = [sgdr_decimal(t, 0.1, 1000, mult, 0.0) for t in steps]
    np.testing.assert_allclose(s.values(steps), want, rtol=0, atol=1e-5 * 0.1)


@pytest.mark.parametrize(
    ("schedule", "exact"),
    [
        (lrkit.per_epoch(lrkit.cyclic(low=0.0, high=1.0, half_cycle=3), steps_per_epoch=7), lambda t: cyclic_exact(t // 7, 0.0, 1.0, 3)),
        (lrkit.step_decay(start=1.0, factor=0.5, every=BIG), lambda t: 0.5 ** (t // BIG)),
        (lrkit.exponential(start=1.0, rate=0.5, every=BIG, staircase=True), lambda t: 0.5 ** (t // BIG)),
        (lrkit.multistep(start=1.0, milestones=(BIG + 1,), factor=0.1), lambda t: 0.1 if t >= BIG + 1 else 1.0),
        (lrkit.warmup(lrkit.cyclic(low=0.0, high=1.0, half_cycle=5), steps=3), lambda t: cyclic_exact(t - 3, 0.0, 1.0, 5)),
        (
            lrkit.join((lrkit.constant(1.0), lrkit.cyclic(low=0.0, high=1.0, half_cycle=5)), boundaries=(BIG + 1,)),
            lambda t: 1.0 if t < BIG + 1 else cyclic_exact(t - BIG - 1, 0.0, 1.0, 5),
        ),
        (lrkit.wsd(peak=1.0, total_steps=BIG + 10, warmup_steps=BIG, decay_steps=5), lambda t: 1.0 if BIG <= t < BIG + 5 else None),
    ],
    ids=["per_epoch", "step_decay", "exponential", "multistep", "warmup", "join", "wsd"],
)
def test_every_combinator_and_staircase_counts_whole_steps_far_out(schedule: lrkit.Schedule, exact: Callable[[int], float | None]) -> None:
    for t in (BIG - 1, BIG, BIG + 1, BIG + 2, BIG + 4, BIG + 6, BIG + 11):
        want = exact(t)
        if want is not None:
            assert schedule(t) == pytest.approx(want, rel=1e-12, abs=1e-15), t


def test_finite_schedules_hold_their_last_value_at_the_largest_step() -> None:
    for s in (
        lrkit.one_cycle(peak=1.0, total_steps=100),
        lrkit.cosine(start=1.0, steps=10, end=0.1),
        lrkit.linear(start=1.0, end=0.2, steps=5),
    ):
        assert s(MAX_STEP) == s(10**6)


@pytest.mark.parametrize("bad", [[2**63], [2**64], [2.0**63], [1e300]])
def test_steps_beyond_64_bits_are_refused_not_rounded(bad: list[float]) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^cyclic\.values: parameter 'steps' must be <= 2\*\*63 - 1"):
        lrkit.cyclic(low=0.0, high=1.0, half_cycle=3).values(bad)
    with pytest.raises(
        lrkit.ScheduleError, match=r"^constant\.__call__: parameter 'step' must be an integer in \[0, 9223372036854775807\]"
    ):
        lrkit.constant(1.0)(2**63)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: lrkit.cyclic(low=0.0, high=1.0, half_cycle=2**62), "half_cycle"),
        (lambda: lrkit.cosine(start=1.0, steps=2**63), "steps"),
        (lambda: lrkit.sgdr(start=1.0, first_cycle=2**64), "first_cycle"),
        (lambda: lrkit.multistep(start=1.0, milestones=(1, 2**63), factor=0.5), "milestones"),
        (lambda: lrkit.per_epoch(lrkit.constant(1.0), steps_per_epoch=2**70), "steps_per_epoch"),
    ],
)
def test_durations_beyond_64_bits_are_refused_at_construction(make: Callable[[], object], field: str) -> None:
    with pytest.raises(lrkit.ScheduleError, match=rf"parameter '{field}' must be <= "):
        make()


PRODUCTS_900 = "*".join(["constant(1.0)"] * 900)


def test_a_spec_of_900_products_is_too_deeply_nested_not_a_recursion_error() -> None:
    with pytest.raises(
        lrkit.ScheduleError, match=rf"^parse: parameter 'text' must nest at most {MAX_DEPTH} schedules .*too deeply nested.*900 levels"
    ):
        lrkit.parse(PRODUCTS_900)
    assert lrkit.parse("*".join(["constant(1.0)"] * MAX_DEPTH))(5) == 1.0  # the limit itself is fine
    with pytest.raises(lrkit.ScheduleError, match="too deeply nested"):
        lrkit.parse("*".join(["constant(1.0)"] * 200_000))


def test_deep_nesting_is_refused_by_from_dict_and_by_the_api_too() -> None:
    d: dict[str, object] = {"type": "constant", "value": 1.0}
    for _ in range(MAX_DEPTH):
        d = {"type": "warmup", "schedule": d, "steps": 1}
    with pytest.raises(lrkit.ScheduleError, match=r"^warmup: .*too deeply nested.*101 levels"):
        lrkit.from_dict(json.loads(json.dumps(d)))
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(lrkit.ScheduleError, match=r"^from_dict: .*too deeply nested"):
        lrkit.from_dict({"type": "join", "schedules": deep, "boundaries": []})
    s: lrkit.Schedule = lrkit.constant(1.0)
    with pytest.raises(lrkit.ScheduleError, match=r"^product: .*too deeply nested"):
        for _ in range(MAX_DEPTH):
            s = s * lrkit.constant(1.0)


def one_error_line(res: Result) -> str:
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    return res.output.strip().splitlines()[-1]


def test_schedule_cli_refuses_a_spec_too_deep_with_one_line(tmp_path: Path, run_cli: RunCli) -> None:
    line = one_error_line(run_cli("schedule", PRODUCTS_900, "--out", tmp_path / "s.png"))
    assert line.startswith("lrkit: error: parse: parameter 'text'") and "too deeply nested" in line
    assert not (tmp_path / "s.png").exists()


def test_schedule_cli_caps_steps_and_says_so_in_help(tmp_path: Path, run_cli: RunCli) -> None:
    line = one_error_line(run_cli("schedule", "constant(1.0)", "--steps", 10**8, "--out", tmp_path / "s.png"))
    assert "--steps" in line and "1000000" in line
    assert "at most 1,000,000" in run_cli("schedule", "--help").output
    assert not (tmp_path / "s.png").exists()


def test_schedule_cli_refuses_an_unwritable_out_before_work(tmp_path: Path, run_cli: RunCli) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in ("/proc/x/s.png", blocker / "s.png", tmp_path):
        line = one_error_line(run_cli("schedule", PRODUCTS_900, "--out", out))  # the spec is bad too: --out is read first
        assert line.startswith("Error: Invalid value for '--out'"), line
