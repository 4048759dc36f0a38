"""lrkit.validate, the one validation layer: what each validator accepts and makes of it, what it rejects, with which class."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit import validate
from lrkit.errors import ControlError, ControlTypeError, LabError, LabTypeError, ScheduleError, ScheduleTypeError

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        (validate.number, 3, 3.0),
        (validate.number, np.float32(0.5), 0.5),
        (validate.non_negative, 0, 0.0),
        (validate.positive, 1e-8, 1e-8),
        (validate.probability, 0, 0.0),
        (validate.probability, 0.999, 0.999),
        (validate.integer, np.int64(7), 7),
        (validate.seed, 2**63 - 1, 2**63 - 1),
        (validate.flag, False, False),
        (validate.sequence, [1, 2], (1, 2)),
        (validate.increasing_steps, (3, 6), (3, 6)),
        (validate.scalar, 2, 2.0),
        (validate.scalar, torch.tensor([0.25]), 0.25),
        (validate.scalar, NAN, NAN),  # a loss may be NaN: the caller decides (a Guard is there for it)
    ],
)
def test_accepted_values_are_converted(check: Callable[..., Any], value: Any, expected: Any) -> None:
    out = check("f", "p", value, ScheduleError)
    assert type(out) is type(expected)
    assert out == expected or (math.isnan(out) and math.isnan(expected))


def test_the_integers_keep_python_int_type_and_tensors_become_floats() -> None:
    assert type(validate.integer("f", "p", np.int32(3), ScheduleError)) is int
    assert validate.scalar("f", "p", torch.tensor(1.5, requires_grad=True) * 2, ScheduleError, finite=True) == 3.0


def test_in_range_bounds_are_closed_unless_opened() -> None:
    assert validate.in_range("f", "p", 0, ScheduleError, 0, 1) == 0.0
    assert validate.in_range("f", "p", 1, ScheduleError, 0, 1) == 1.0
    with pytest.raises(ScheduleError, match=r"must lie in \(0, 1\], got 0$"):
        validate.in_range("f", "p", 0, ScheduleError, 0, 1, open_low=True)
    with pytest.raises(ScheduleError, match=r"must lie in \[0, 1\), got 1$"):
        validate.in_range("f", "p", 1, ScheduleError, 0, 1, open_high=True)


# (validator, extra args, value, the requirement it states) for values of the right type that are rejected
BAD_VALUES = [
    (validate.number, (), NAN, "must be finite"),
    (validate.number, (), INF, "must be finite"),
    (validate.non_negative, (), -0.1, "must be >= 0"),
    (validate.positive, (), 0, "must be > 0"),
    (validate.probability, (), 1.0, "must lie in [0, 1)"),
    (validate.probability, (), -0.5, "must lie in [0, 1)"),
    (validate.integer, (), 0, "must be a positive integer"),
    (validate.seed, (), -1, "must be an integer in [0, 9223372036854775807]"),
    (validate.choice, (("min", "max"),), "lowest", "must be one of 'min', 'max'"),
    (validate.increasing_steps, (), [6, 3], "must be strictly increasing"),
    (validate.scalar, (), torch.ones(2), "must be a number or a one-element tensor"),
]

# values of the wrong type: the TypeError child of the error class
BAD_TYPES = [
    (validate.number, (), "1", "must be a number"),
    (validate.number, (), True, "must be a number"),
    (validate.positive, (), None, "must be a number"),
    (validate.integer, (), 2.0, "must be a positive integer"),
    (validate.integer, (), True, "must be a positive integer"),
    (validate.choice, (("min", "max"),), 3, "must be one of 'min', 'max'"),
    (validate.flag, (), 1, "must be True or False"),
    (validate.sequence, (), "ab", "must be a list"),
    (validate.scalar, (), "0.5", "must be a number or a one-element tensor"),
    (validate.instance, (float, "a float"), 1, "must be a float"),
]


def _case_id(item: Any) -> str:
    """A stable test id (xdist workers must collect the same ids: no object addresses)."""
    return getattr(item, "__name__", None) or repr(item)


@pytest.mark.parametrize(("check", "args", "value", "requirement"), BAD_VALUES, ids=_case_id)
@pytest.mark.parametrize("error", [ScheduleError, ControlError, LabError])
def test_rejected_values_raise_the_error_class_and_not_a_type_error(
    check: Callable[..., Any], args: tuple[Any, ...], value: Any, requirement: str, error: type[lrkit.LrkitValueError]
) -> None:
    with pytest.raises(error) as info:
        check("func", "param", value, error, *args)
    assert type(info.value) is error and not isinstance(info.value, TypeError)
    assert isinstance(info.value, lrkit.LrkitError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"func: parameter 'param' {requirement}")


@pytest.mark.parametrize(("check", "args", "value", "requirement"), BAD_TYPES, ids=_case_id)
@pytest.mark.parametrize(
    ("error", "type_error"), [(ScheduleError, ScheduleTypeError), (ControlError, ControlTypeError), (LabError, LabTypeError)]
)
def test_wrong_types_raise_the_type_error_child(
    check: Callable[..., Any], args: tuple[Any, ...], value: Any, requirement: str, error: type[Any], type_error: type[Any]
) -> None:
    with pytest.raises(TypeError) as info:
        check("func", "param", value, error, *args)
    assert type(info.value) is type_error and isinstance(info.value, error) and isinstance(info.value, lrkit.LrkitError)
    assert str(info.value) == f"func: parameter 'param' {requirement}, got {value!r}"


def test_scalar_with_finite_rejects_nan_and_inf_of_numbers_and_tensors() -> None:
    for value in (NAN, -INF, torch.tensor(float("nan"))):
        with pytest.raises(ControlError, match=r"^Plateau.update: parameter 'metric' must be a finite number, got ") as info:
            validate.scalar("Plateau.update", "metric", value, ControlError, finite=True)
        assert not isinstance(info.value, TypeError)


def test_a_multi_element_tensor_is_reported_by_its_shape() -> None:
    with pytest.raises(ControlError) as info:
        validate.scalar("Guard.check", "loss", torch.ones(2, 3), ControlError)
    assert str(info.value) == "Guard.check: parameter 'loss' must be a number or a one-element tensor, got (2, 3)"


def test_length_and_fail_use_the_one_message_form() -> None:
    validate.length("piecewise", "values", (1, 2), ScheduleError, 2, "one more than boundaries")
    with pytest.raises(ScheduleError) as info:
        validate.length("piecewise", "values", (1, 2), ScheduleError, 3, "one more than boundaries")
    assert str(info.value) == "piecewise: parameter 'values' must have 3 items (one more than boundaries), got [1, 2]"
    with pytest.raises(ScheduleTypeError, match=r"^f: parameter 'p' needs x, got 1$"):
        validate.wrong_type("f", "p", "needs x", 1, ScheduleError)


def test_is_number_and_is_tensor() -> None:
    assert [validate.is_number(v) for v in (1, 1.5, np.float64(2), True, "1", None, 1j)] == [True, True, True, False, False, False, False]
    assert validate.is_tensor(torch.zeros(1)) and not validate.is_tensor(np.zeros(1)) and not validate.is_tensor(1.0)


def test_validate_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, lrkit.validate; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- the validators in use: wrong types are TypeErrors too -----------------------------------
def test_plateau_with_a_mode_of_the_wrong_type_is_a_control_error_and_a_type_error() -> None:
    with pytest.raises(lrkit.ControlError, match=r"^Plateau: parameter 'mode' must be one of 'min', 'max', got 3$") as info:
        lrkit.Plateau(mode=3)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_scheduler_with_a_float_lr_is_a_schedule_error_and_a_type_error() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(lrkit.ScheduleError, match=r"^Scheduler: parameter 'lr' must be an lrkit schedule, got 0.1$") as info:
        lrkit.Scheduler(opt, lr=0.1)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError, match="optimizer"):
        lrkit.Scheduler("x", lr=lrkit.constant(0.1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: lrkit.cosine(start="0.1", steps=10),
        lambda: lrkit.cosine(start=0.1, steps=10.0),
        lambda: lrkit.warmup(0.1, steps=10),
        lambda: lrkit.parse(3),
        lambda: lrkit.from_dict("cosine"),
        lambda: lrkit.EarlyStopping(restore_best=1),
        lambda: lrkit.Plateau(max_lr="1"),
        lambda: lrkit.Guard(torch.nn.Linear(1, 1), "sgd"),
        lambda: lrkit.Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters()), model="m"),
    ],
)
def test_wrong_types_across_the_core_are_lrkit_type_errors(make: Callable[[], Any]) -> None:
    with pytest.raises(lrkit.LrkitTypeError):
        make()


@pytest.mark.parametrize(
    "make",
    [lambda: lrkit.cosine(start=-0.1, steps=10), lambda: lrkit.Plateau(factor=1.0), lambda: lrkit.EarlyStopping(patience=0)],
)
def test_bad_values_of_the_right_type_are_not_type_errors(make: Callable[[], Any]) -> None:
    with pytest.raises(lrkit.LrkitValueError) as info:
        make()
    assert not isinstance(info.value, TypeError)
