"""Bad input: every factory, `parse`, `from_dict` and `Scheduler` reject it at once with a ScheduleError
(a ValueError) whose message names the function, the parameter and the value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import lrkit
from lrkit.schedules import REGISTRY

NAN, INF = math.nan, math.inf
COS = lrkit.cosine(start=0.1, steps=10)

# bad values by the kind of a parameter
NON_NEGATIVE = [-0.1, -1, NAN, INF, -INF, "0.1", None, True, [0.1]]
POSITIVE = [0, 0.0, -1.0, NAN, INF, "1", None, False]
DURATION = [0, -1, 1.5, 10.0, "10", True, None, NAN, INF]
COUNT = [-1, 1.5, 2.0, "3", True, None]
FLAG = [1, 0, "yes", None]
SCHEDULE = [0.1, "cosine(start=0.1, steps=10)", None, {"type": "constant", "value": 0.1}, lrkit.cosine]
UNIT = [0, 0.0, -0.1, 1.5, NAN, INF, None, "0.5"]  # (0, 1]
STEP_LIST = [[5, 3], [3, 3], [0, 2], [-1], [1.5], [True], "3", 5, None]

# every registered factory: arguments that work, and the bad values of each parameter
CASES: dict[str, tuple[dict[str, Any], dict[str, list[Any]]]] = {
    "constant": ({"value": 0.1}, {"value": NON_NEGATIVE}),
    "linear": ({"start": 0.1, "end": 0.0, "steps": 10}, {"start": NON_NEGATIVE, "end": NON_NEGATIVE, "steps": DURATION}),
    "polynomial": (
        {"start": 0.1, "end": 0.0, "steps": 10, "power": 2.0},
        {"start": NON_NEGATIVE, "end": NON_NEGATIVE, "steps": DURATION, "power": POSITIVE},
    ),
    "exponential": (
        {"start": 0.1, "rate": 0.9, "every": 2, "staircase": True, "floor": 0.001},
        {"start": NON_NEGATIVE, "rate": POSITIVE, "every": DURATION, "staircase": FLAG, "floor": NON_NEGATIVE},
    ),
    "inverse_time": (
        {"start": 0.1, "decay": 0.01, "every": 2, "staircase": False},
        {"start": NON_NEGATIVE, "decay": NON_NEGATIVE, "every": DURATION, "staircase": FLAG},
    ),
    "inverse_sqrt": (
        {"peak": 0.1, "warmup_steps": 10, "timescale": 20},
        {"peak": NON_NEGATIVE, "warmup_steps": COUNT, "timescale": [0, -1, 1.5, "20", True]},
    ),
    "step_decay": ({"start": 0.1, "factor": 0.5, "every": 10}, {"start": NON_NEGATIVE, "factor": POSITIVE, "every": DURATION}),
    "multistep": (
        {"start": 0.1, "milestones": [10, 20], "factor": 0.1},
        {"start": NON_NEGATIVE, "milestones": STEP_LIST, "factor": POSITIVE},
    ),
    "piecewise": (
        {"boundaries": [10, 20], "values": [0.1, 0.01, 0.001]},
        {"boundaries": STEP_LIST[:6], "values": [[0.1, -0.01, 0.001], [0.1, NAN, 0.1], [0.1, 0.01], [0.1] * 4, "abc", None, 0.1]},
    ),
    "cosine": ({"start": 0.1, "steps": 10, "end": 0.001}, {"start": NON_NEGATIVE, "steps": DURATION, "end": NON_NEGATIVE}),
    "sgdr": (
        {"start": 0.1, "first_cycle": 10, "cycle_mult": 2, "end": 0.0, "peak_decay": 0.5},
        {
            "start": NON_NEGATIVE,
            "first_cycle": DURATION,
            "cycle_mult": [0.5, 0, -1, NAN, INF, "2", None],
            "end": NON_NEGATIVE,
            "peak_decay": POSITIVE,
        },
    ),
    "cyclic": (
        {"low": 0.01, "high": 0.1, "half_cycle": 10, "mode": "exp_range", "gamma": 0.99},
        {"low": [*NON_NEGATIVE, 0.2], "high": [*NON_NEGATIVE, 0.001], "half_cycle": DURATION, "mode": ["bogus", 1, None], "gamma": UNIT},
    ),
    "one_cycle": (
        {
            "peak": 0.1,
            "total_steps": 100,
            "pct_start": 0.3,
            "div_factor": 25.0,
            "final_div_factor": 1e4,
            "anneal": "cos",
            "three_phase": False,
        },
        {
            "peak": NON_NEGATIVE,
            "total_steps": [*DURATION, 1],
            "pct_start": UNIT,
            "div_factor": POSITIVE,
            "final_div_factor": POSITIVE,
            "anneal": ["cosine", "exp", None],
            "three_phase": FLAG,
        },
    ),
    "wsd": (
        {"peak": 0.1, "total_steps": 100, "warmup_steps": 10, "decay_steps": 20, "decay": "cosine", "end": 0.0},
        {
            "peak": NON_NEGATIVE,
            "total_steps": [*DURATION, 29],
            "warmup_steps": [*COUNT, 81],
            "decay_steps": [*COUNT, 91],
            "decay": ["sqrt", "cos", None],
            "end": NON_NEGATIVE,
        },
    ),
    "warmup": ({"schedule": COS, "steps": 5, "start": 0.0}, {"schedule": SCHEDULE, "steps": DURATION, "start": NON_NEGATIVE}),
    "join": (
        {"schedules": [COS, COS], "boundaries": [10]},
        {"schedules": [[COS], [COS, COS, COS], [COS, 0.1], "abc", None, COS], "boundaries": [*STEP_LIST[:6], [10, 20]]},
    ),
    "clip": (
        {"schedule": COS, "low": 0.01, "high": 0.05},
        {"schedule": SCHEDULE, "low": [*NON_NEGATIVE, 0.06], "high": [*NON_NEGATIVE[:-3], 0.001]},
    ),
    "per_epoch": ({"schedule": COS, "steps_per_epoch": 10}, {"schedule": SCHEDULE, "steps_per_epoch": DURATION}),
    "scale": ({"schedule": COS, "factor": 0.5}, {"schedule": SCHEDULE, "factor": NON_NEGATIVE}),
    "product": ({"left": COS, "right": COS}, {"left": SCHEDULE, "right": SCHEDULE}),
    "swa_schedule": (
        {"schedule": COS, "swa_start": 20, "swa_lr": 0.01, "anneal_steps": 5, "anneal": "linear"},
        {"schedule": SCHEDULE, "swa_start": COUNT, "swa_lr": NON_NEGATIVE, "anneal_steps": COUNT, "anneal": ["cosine", "exp", None]},
    ),
}

BAD = [(name, param, value) for name, (_, params) in CASES.items() for param, values in params.items() for value in values]


def test_every_factory_and_parameter_is_covered() -> None:
    assert set(CASES) == set(REGISTRY)
    for name, (good, params) in CASES.items():
        REGISTRY[name](**good)  # the good arguments are good
        assert set(params) == set(good), name


def assert_names(message: str, func: str, param: str, value: Any) -> None:
    assert message.startswith(f"{func}:") or message.startswith(f"{func}."), message
    assert f"'{param}'" in message, message
    shown = [repr(value)] + ([repr(v) for v in value] if isinstance(value, list) else [])
    assert any(s in message for s in shown), message


def _id(case: tuple[str, str, Any]) -> str:
    return f"{case[0]}-{case[1]}-{case[2]!r}"[:60]


@pytest.mark.parametrize("case", BAD, ids=[_id(c) for c in BAD])
def test_factory_rejects_bad_value(case: tuple[str, str, Any]) -> None:
    name, param, value = case
    kwargs = {**CASES[name][0], param: value}
    with pytest.raises(lrkit.ScheduleError) as info:
        REGISTRY[name](**kwargs)
    assert isinstance(info.value, ValueError)
    # a limit set by another parameter (low <= high, warmup + decay <= total) may be reported on that parameter
    related = {"low": "high", "high": "low", "total_steps": "decay_steps", "warmup_steps": "decay_steps", "boundaries": "schedules"}
    message = str(info.value)
    if f"'{param}'" not in message and related.get(param, param) != param:
        param, value = related[param], kwargs[related[param]]
    assert_names(message, name, param, value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_from_dict_rejects_what_the_factory_rejects(name: str) -> None:
    good, params = CASES[name]
    encoded = REGISTRY[name](**good).to_dict()
    param = next(p for p in params if p in encoded)
    for value in (NAN, -1, "x", None):
        with pytest.raises(lrkit.ScheduleError) as info:
            lrkit.from_dict({**encoded, param: value})
        assert f"'{param}'" in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("text", "func", "param", "value"),
    [
        ("cosine(start=-0.1, steps=10)", "cosine", "start", "-0.1"),
        ("cosine(start=0.1, steps=0)", "cosine", "steps", "0"),
        ("cosine(start=0.1, steps=10.5)", "cosine", "steps", "10.5"),
        ("cosine(start=1e999, steps=10)", "cosine", "start", "inf"),
        ("multistep(start=0.1, milestones=[30, 10], factor=0.1)", "multistep", "milestones", "[30, 10]"),
        ("multistep(start=0.1, milestones=[10, 10], factor=0.1)", "multistep", "milestones", "[10, 10]"),
        ("cyclic(low=0.5, high=0.1, half_cycle=10)", "cyclic", "low", "0.5"),
        ("cyclic(low=0.1, high=0.5, half_cycle=10, mode='square')", "cyclic", "mode", "'square'"),
        ("piecewise(boundaries=[10], values=[0.1])", "piecewise", "values", "[0.1]"),
        ("warmup(0.1, steps=10)", "warmup", "schedule", "0.1"),
        ("-0.5 * constant(0.1)", "scale", "factor", "-0.5"),
        ("cosine(start=0.1, steps=10, warmup=5)", "parse", "warmup", "5"),
        ("cosine(start=0.1)", "parse", "steps", "{'start': 0.1}"),
    ],
)
def test_parse_reports_the_factory_error(text: str, func: str, param: str, value: str) -> None:
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.parse(text)
    message = str(info.value)
    assert message.startswith(f"{func}:") and f"'{param}'" in message and value in message, message


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.parse("cosin(start=0.1, steps=10)")
    assert "'cosin'" in str(info.value) and all(name in str(info.value) for name in REGISTRY)
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.from_dict({"type": "triangle", "low": 0.1})
    assert "'triangle'" in str(info.value) and "cyclic" in str(info.value) and "one_cycle" in str(info.value)
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.cyclic(low=0.1, high=0.2, half_cycle=3, mode="tri")
    assert all(m in str(info.value) for m in ("'triangular'", "'triangular2'", "'exp_range'"))
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.wsd(peak=0.1, total_steps=10, warmup_steps=1, decay_steps=2, decay="exp")
    assert all(m in str(info.value) for m in ("'linear'", "'cosine'", "'1-sqrt'"))
    with pytest.raises(lrkit.ScheduleError, match=r"start, steps, end"):
        lrkit.parse("cosine(start=0.1, steps=10, stop=0.0)")


@pytest.mark.parametrize(
    "d",
    [None, [], "cosine", {"start": 0.1}, {"type": None}, {"type": ["cosine"]}, {"type": {"a": 1}}, {"type": "cosine", "start": 0.1}],
    ids=repr,
)
def test_from_dict_rejects_malformed_dicts(d: Any) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^from_dict: parameter '(d|type|steps)'"):
        lrkit.from_dict(d)


def test_from_dict_rejects_a_nested_bad_schedule() -> None:
    d = lrkit.warmup(COS, steps=3).to_dict()
    d["schedule"]["steps"] = -4
    with pytest.raises(lrkit.ScheduleError, match=r"^cosine: parameter 'steps' must be a positive integer, got -4$"):
        lrkit.from_dict(d)


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "cosine.__class__",
    "constant(0.1).__class__.__mro__",
    "().__class__.__bases__[0].__subclasses__()",
    "constant(value=().__class__)",
    "lambda: constant(0.1)",
    "[x for x in (1, 2)]",
    "open('{marker}', 'w')",
    "eval('constant(0.1)')",
    "exec('import os')",
    "getattr(constant, 'value')",
    "globals()",
    "REGISTRY",
    "Schedule()",
    "lrkit.cosine(start=0.1, steps=10)",
    "constant(value=__builtins__)",
    "constant(value=x)",
    "constant(*[0.1])",
    "constant(**{{'value': 0.1}})",
    "constant(0.1) if True else constant(0.2)",
    "(y := constant(0.1))",
    "constant(0.1) + constant(0.2)",
    "constant(0.1) ** 2",
    "-constant(0.1)",
    "constant(0.1)[0]",
    "constant(value=b'x')",
    "constant(value=1j)",
    "constant(value=...)",
    "constant(value={{'a': 1}})",
    "constant(value={{1}})",
    "constant(value=f'{{1}}')",
    "constant(value=-'a')",
    "constant(value=-True)",
    "'a' * constant(0.1)",
    "True * constant(0.1)",
    "[0.1] * constant(0.1)",
    "2 * 3",
    "0.1",
    "'cosine(start=0.1, steps=10)'",
    "import os",
    "constant(0.1); import os",
    "constant(0.1)\nimport os",
    "constant(0.1",
    "",
    "constant(\x00)",
    "cosine(start=0.1, steps=10, start=0.2)",
    "constant(0.1, 0.2)",
    "9" * 5000,
]


@pytest.mark.parametrize("template", HOSTILE, ids=range(len(HOSTILE)))
def test_parse_rejects_anything_but_registered_calls_with_literals(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = template.format(marker=marker)
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.parse(text)
    assert str(info.value).startswith("parse: parameter"), str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("text", [None, 3, b"constant(0.1)", COS])
def test_parse_needs_a_string(text: Any) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^parse: parameter 'text' must be a string"):
        lrkit.parse(text)


@pytest.mark.parametrize("step", [-1, 1.5, 2.0, "3", None, True])
def test_calling_with_a_bad_step_is_an_error(step: Any) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^cosine\.__call__: parameter 'step'"):
        COS(step)


@pytest.mark.parametrize("steps", [[-1, 2], [0.5], [NAN], ["a"], [True, False]], ids=repr)
def test_values_with_bad_steps_is_an_error(steps: Any) -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^cosine\.values: parameter 'steps'"):
        COS.values(steps)


def test_schedule_error_is_a_value_error_and_an_lrkit_error() -> None:
    assert issubclass(lrkit.ScheduleError, ValueError) and issubclass(lrkit.ScheduleError, lrkit.LrkitError)


# -- Scheduler (torch) --------------------------------------------------------------------------
def _optimizer(*lrs: float) -> Any:
    torch = pytest.importorskip("torch")
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.ones(1))], "lr": lr} for lr in lrs])


@pytest.mark.parametrize(
    ("kwargs", "param", "value"),
    [
        ({"optimizer": "sgd"}, "optimizer", "'sgd'"),
        ({"optimizer": None}, "optimizer", "None"),
        ({"lr": 0.1}, "lr", "0.1"),
        ({"lr": "cosine(start=0.1, steps=10)"}, "lr", "'cosine(start=0.1, steps=10)'"),
        ({"momentum": 0.9}, "momentum", "0.9"),
        ({"group_scales": [1.0]}, "group_scales", "[1.0]"),
        ({"group_scales": [1.0, 2.0, 3.0]}, "group_scales", "[1.0, 2.0, 3.0]"),
        ({"group_scales": [1.0, -0.5]}, "group_scales", "[1.0, -0.5]"),
        # each scale is read by lrkit.validate.scalar, which names the offending item
        ({"group_scales": [1.0, NAN]}, "group_scales", "got nan"),
        ({"group_scales": [1.0, INF]}, "group_scales", "got inf"),
        ({"group_scales": [True, 1.0]}, "group_scales", "got True"),
        ({"group_scales": [1.0, "2"]}, "group_scales", "got '2'"),
        ({"group_scales": 2.0}, "group_scales", "got 2.0"),
    ],
)
def test_scheduler_rejects_bad_arguments(kwargs: dict[str, Any], param: str, value: str) -> None:
    args = {"optimizer": _optimizer(0.1, 0.01), "lr": COS, **kwargs}
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.Scheduler(**args)
    assert_names_text(str(info.value), "Scheduler", param, value)


def assert_names_text(message: str, func: str, param: str, value: str) -> None:
    assert message.startswith(f"{func}:") and f"'{param}'" in message and value in message, message


def test_scheduler_needs_group_scales_when_the_first_lr_is_zero_and_others_differ() -> None:
    with pytest.raises(lrkit.ScheduleError) as info:
        lrkit.Scheduler(_optimizer(0.0, 0.01), lr=COS)
    assert_names_text(str(info.value), "Scheduler", "group_scales", "[0.0, 0.01]")
    lrkit.Scheduler(_optimizer(0.0, 0.01), lr=COS, group_scales=[1.0, 0.1])


def test_scheduler_load_state_dict_rejects_a_foreign_state() -> None:
    sched = lrkit.Scheduler(_optimizer(0.1), lr=COS)
    with pytest.raises(lrkit.ScheduleError) as info:
        sched.load_state_dict({"last_epoch": 3, "base_lrs": [0.1]})
    assert_names_text(str(info.value), "Scheduler.load_state_dict", "state_dict", "['base_lrs', 'last_epoch']")
