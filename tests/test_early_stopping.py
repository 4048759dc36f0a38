"""lrkit.EarlyStopping: when it stops, which weights it puts back, its state, bad input.

`lrkit.EarlyStopping` is the torch layer's class (`lrkit.torch.early_stopping`): the pure
decision of `lrkit.control.EarlyStopping` plus the kept weights.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lrkit
from lrkit.control import early_stopping as pure
from lrkit.control.early_stopping import EarlyStoppingState
from lrkit.torch.early_stopping import EarlyStopping


def _decisions(stopper: pure.EarlyStopping, metrics: list[float]) -> list[bool]:
    return [stopper.observe(m) for m in metrics]


def test_stops_after_patience_evaluations_without_improvement() -> None:
    assert _decisions(EarlyStopping(patience=3), [1.0, 0.9, 0.95, 0.91, 0.8, 0.85, 0.9, 0.99]) == [False] * 7 + [True]


def test_min_delta_is_absolute_and_small_gains_do_not_count() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.05)
    assert _decisions(stopper, [1.0, 0.97, 0.96]) == [False, False, True]
    assert stopper.state.best == 1.0 and stopper.state.best_evaluation == 0


def test_mode_max() -> None:
    stopper = EarlyStopping(mode="max", patience=2)
    assert _decisions(stopper, [0.5, 0.7, 0.6, 0.7]) == [False, False, False, True]
    assert stopper.state == EarlyStoppingState(best=0.7, best_evaluation=1, bad_evals=2, evaluations=4, stop=True)


def test_decision_is_final() -> None:
    stopper = EarlyStopping(patience=1)
    assert _decisions(stopper, [1.0, 2.0, 0.1]) == [False, True, True]
    assert stopper.state.best == 1.0


def _set(model: torch.nn.Linear, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(-value)


def test_restore_best_puts_back_weights_of_best_evaluation() -> None:
    model = torch.nn.Linear(3, 2)
    stopper = EarlyStopping(patience=2)
    for value, loss in [(1.0, 0.9), (2.0, 0.4), (3.0, 0.6), (4.0, 0.5)]:
        _set(model, value)
        stop = stopper.observe(loss, model)
    assert stop
    assert torch.equal(model.weight, torch.full((2, 3), 2.0)) and torch.equal(model.bias, torch.full((2,), -2.0))
    assert stopper.best_weights is not None and all(t.device.type == "cpu" for t in stopper.best_weights.values())


def test_kept_weights_are_a_copy() -> None:
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=1)
    _set(model, 1.0)
    stopper.observe(0.1, model)
    _set(model, 5.0)  # in place: a kept reference would change too
    stopper.restore(model)
    assert torch.equal(model.weight, torch.ones(1, 2))


def test_without_restore_best_the_model_is_untouched() -> None:
    model = torch.nn.Linear(2, 1)
    stopper = EarlyStopping(patience=1, restore_best=False)
    _set(model, 1.0)
    stopper.observe(0.1, model)
    _set(model, 7.0)
    assert stopper.observe(0.2, model)
    assert torch.equal(model.weight, torch.full((1, 2), 7.0)) and stopper.best_weights is None
    with pytest.raises(lrkit.ControlError, match="restore"):
        stopper.restore(model)


def test_state_dict_resume_decides_as_unbroken() -> None:
    metrics = [1.0, 0.8, 0.85, 0.7, 0.75, 0.72, 0.71, 0.9]
    unbroken = _decisions(EarlyStopping(patience=3), metrics)
    first = EarlyStopping(patience=3)
    head = _decisions(first, metrics[:4])
    resumed = EarlyStopping(patience=3)
    resumed.load_state_dict(first.state_dict())
    assert head + _decisions(resumed, metrics[4:]) == unbroken == [False] * 6 + [True, True]


def test_load_state_dict_rejects_incomplete() -> None:
    with pytest.raises(lrkit.ControlError, match="lacks"):
        EarlyStopping().load_state_dict({"state": {}})


@pytest.mark.parametrize(
    "kwargs",
    [{"patience": 0}, {"patience": -1}, {"patience": 2.5}, {"mode": "lowest"}, {"min_delta": -0.1}, {"restore_best": "yes"}],
)
def test_bad_arguments_raise_control_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(lrkit.ControlError, match="EarlyStopping: parameter"):
        EarlyStopping(**kwargs)


@pytest.mark.parametrize("metric", [float("nan"), float("-inf"), "1.0", None])
def test_bad_metric_raises_and_keeps_state(metric: Any) -> None:
    stopper = EarlyStopping(patience=1)
    stopper.observe(1.0)
    before = stopper.state
    with pytest.raises(lrkit.ControlError, match="metric"):
        stopper.observe(metric)
    assert stopper.state == before


def test_lazy_export() -> None:
    assert lrkit.EarlyStopping is EarlyStopping


@pytest.mark.parametrize("cls", [pure.EarlyStopping, EarlyStopping])
def test_the_pure_decision_and_the_torch_class_decide_alike(cls: type[pure.EarlyStopping]) -> None:
    metrics = [1.0, 0.8, 0.85, 0.7, 0.75, 0.72, 0.71, 0.9]
    stopper = cls(patience=3)
    assert _decisions(stopper, metrics) == [False] * 6 + [True, True]
    assert stopper.state == EarlyStoppingState(best=0.7, best_evaluation=3, bad_evals=3, evaluations=8, stop=True)


def test_the_pure_decision_keeps_no_weights() -> None:
    stopper = pure.EarlyStopping(patience=1)
    assert not hasattr(stopper, "best_weights") and not hasattr(stopper, "restore")
    stopper.observe(0.5)
    assert stopper.state_dict() == {"state": {"best": 0.5, "best_evaluation": 0, "bad_evals": 0, "evaluations": 1, "stop": False}}
    with pytest.raises(TypeError):
        stopper.observe(0.4, torch.nn.Linear(1, 1))  # type: ignore[call-arg]
    assert repr(stopper) == "EarlyStopping(mode='min', patience=1, min_delta=0.0)"
    assert repr(EarlyStopping(patience=2)) == "EarlyStopping(mode='min', patience=2, min_delta=0.0, restore_best=True)"


def test_the_torch_class_extends_the_pure_decision() -> None:
    assert issubclass(EarlyStopping, pure.EarlyStopping) and lrkit.control.EarlyStopping is pure.EarlyStopping


@pytest.mark.parametrize("bad", [{"best_weights": None}, "state", None])
def test_the_pure_decision_rejects_a_foreign_state(bad: Any) -> None:
    with pytest.raises(lrkit.ControlError, match="state_dict"):
        pure.EarlyStopping().load_state_dict(bad)


def test_a_model_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(lrkit.ControlError, match="model") as info:
        EarlyStopping().observe(0.5, "model")  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)
