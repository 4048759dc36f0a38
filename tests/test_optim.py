"""`lrkit.Optim`, the one optimizer spec: torch's defaults, to_torch / from_torch, text specs, bad input."""

from __future__ import annotations

import inspect
import json
import pickle
import sys
from typing import Any

import pytest
import torch

import lrkit
from lrkit.errors import LabError, LabTypeError
from lrkit.optim import DEFAULT_LRS, FAMILIES, Optim, parse_list

TORCH_CLASS = {
    "sgd": torch.optim.SGD,
    "nesterov": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
# what torch itself builds for each family when given only the lr (Nesterov needs a momentum: lrkit's 0.9)
TORCH_OWN = {"nesterov": {"momentum": 0.9, "nesterov": True}}
# non-default hyperparameters, and the torch.optim arguments each one must become
NON_DEFAULT: dict[str, tuple[Optim, dict[str, Any]]] = {
    "sgd": (Optim("sgd", momentum=0.5, weight_decay=1e-3), {"momentum": 0.5, "weight_decay": 1e-3, "nesterov": False}),
    "nesterov": (Optim("nesterov", momentum=0.7, weight_decay=1e-4), {"momentum": 0.7, "weight_decay": 1e-4, "nesterov": True}),
    "adagrad": (Optim("adagrad", eps=1e-6, weight_decay=1e-3), {"eps": 1e-6, "weight_decay": 1e-3}),
    "rmsprop": (
        Optim("rmsprop", momentum=0.3, beta2=0.9, eps=1e-6, weight_decay=1e-3, centered=True),
        {"momentum": 0.3, "alpha": 0.9, "eps": 1e-6, "weight_decay": 1e-3, "centered": True},
    ),
    "adam": (
        Optim("adam", momentum=0.8, beta2=0.99, eps=1e-7, weight_decay=1e-2),
        {"betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 1e-2},
    ),
    "adamw": (
        Optim("adamw", momentum=0.85, beta2=0.95, eps=1e-6, weight_decay=0.1),
        {"betas": (0.85, 0.95), "eps": 1e-6, "weight_decay": 0.1},
    ),
}
ALL = [Optim(f) for f in FAMILIES] + [o for o, _ in NON_DEFAULT.values()]


def params() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


def hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first group's settings, without the tensors and the code-path switches (foreach, fused)."""
    return {k: v for k, v in optimizer.param_groups[0].items() if k not in ("params", "foreach", "fused")}


def test_families_are_the_six() -> None:
    assert FAMILIES == ("sgd", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
    assert set(NON_DEFAULT) == set(FAMILIES) == set(TORCH_CLASS)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_lr_is_torchs_own(family: str) -> None:
    want = inspect.signature(TORCH_CLASS[family]).parameters["lr"].default
    assert DEFAULT_LRS[family] == want
    assert Optim(family).default_lr == want


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bare_name_means_torchs_defaults(family: str) -> None:
    built = Optim(family).to_torch(params(), lr=0.02)
    own = TORCH_CLASS[family](params(), lr=0.02, **TORCH_OWN.get(family, {}))
    assert type(built) is TORCH_CLASS[family]
    assert hyperparameters(built) == hyperparameters(own)


def test_sgd_is_plain_sgd_and_momentum_sgd_is_spelled_out() -> None:
    assert Optim("sgd").momentum == 0.0
    assert Optim("sgd").to_torch(params(), lr=0.1).param_groups[0]["momentum"] == 0.0
    assert Optim.parse("sgd(momentum=0.9)").to_torch(params(), lr=0.1).param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("family", FAMILIES)
def test_to_torch_passes_every_hyperparameter(family: str) -> None:
    optim, expected = NON_DEFAULT[family]
    built = optim.to_torch(params(), lr=0.3, foreach=False)
    assert type(built) is TORCH_CLASS[family]
    group = built.param_groups[0]
    assert group["lr"] == 0.3 and group["foreach"] is False
    assert {k: group[k] for k in expected} == expected


@pytest.mark.parametrize("optim", ALL, ids=lambda o: o.spec)
def test_from_torch_reads_back_what_to_torch_built(optim: Optim) -> None:
    assert Optim.from_torch(optim.to_torch(params(), lr=0.05)) == optim


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1), "dampening"),
        (lambda p: torch.optim.Adam(p, amsgrad=True), "amsgrad"),
        (lambda p: torch.optim.AdamW(p, amsgrad=True), "amsgrad"),
        (lambda p: torch.optim.Adagrad(p, lr_decay=0.1), "lr_decay"),
        (lambda p: torch.optim.RMSprop(p, maximize=True), "maximize"),
    ],
    ids=["sgd-dampening", "adam-amsgrad", "adamw-amsgrad", "adagrad-lr_decay", "rmsprop-maximize"],
)
def test_from_torch_refuses_options_lrkit_does_not_model(build: Any, named: str) -> None:
    with pytest.raises(LabError, match=rf"Optim.from_torch: parameter 'optimizer' must have {named}=.*lrkit does not model it"):
        Optim.from_torch(build(params()))


def test_from_torch_refuses_other_optimizers() -> None:
    for other in (torch.optim.LBFGS(params()), torch.optim.Adamax(params()), torch.optim.NAdam(params())):
        with pytest.raises(LabError, match=f"SGD, Adagrad, RMSprop, Adam or AdamW.*got '{type(other).__name__}'"):
            Optim.from_torch(other)
    with pytest.raises(LabTypeError, match=r"Optim\.from_torch: parameter 'optimizer'"):
        Optim.from_torch("sgd")


@pytest.mark.parametrize("optim", ALL, ids=lambda o: o.spec)
def test_spec_dict_and_pickle_round_trip(optim: Optim) -> None:
    assert Optim.parse(optim.spec) == optim
    assert Optim.from_dict(json.loads(json.dumps(optim.to_dict()))) == optim
    assert pickle.loads(pickle.dumps(optim)) == optim


def test_spec_names_only_what_differs_from_the_defaults() -> None:
    assert [Optim(f).spec for f in FAMILIES] == list(FAMILIES)
    assert Optim("sgd", momentum=0.9).spec == "sgd(momentum=0.9)"
    assert Optim("rmsprop", centered=True).spec == "rmsprop(centered=True)"
    assert Optim.parse("  adamw( weight_decay = 0.1 ) ") == Optim("adamw", weight_decay=0.1)


def test_momentum_out_of_range_is_one_error_class_either_side() -> None:
    errors = []
    for momentum in (-1, 2, 1.0):
        with pytest.raises(LabError, match=r"Optim: parameter 'momentum' must lie in \[0, 1\)") as caught:
            Optim(momentum=momentum)
        errors.append(type(caught.value))
    assert errors == [LabError, LabError, LabError]
    assert issubclass(LabError, lrkit.LrkitError)
    with pytest.raises(LabTypeError, match="momentum"):
        Optim(momentum="0.9")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sgd(", "must be an optimizer"),
        ("lion", "'sgd', 'nesterov'"),
        ("lion(momentum=0.9)", "'sgd', 'nesterov'"),
        ("sgd(lr=1)", "unknown argument 'lr' .valid: momentum, beta2, eps, weight_decay, centered"),
        ("sgd(momentum=__import__('os'))", "literal values only"),
        ("sgd(momentum=__import__('sys').modules.__setitem__('lrkit_was_run', 1))", "literal values only"),
        ("sgd(0.9)", "must be an optimizer"),
        ("__import__('sys').modules.__setitem__('lrkit_was_run', 1)", "must be an optimizer"),
        ("", "must be an optimizer"),
    ],
)
def test_bad_spec_text_is_a_lab_error_and_runs_nothing(text: str, says: str) -> None:
    with pytest.raises(LabError, match=says) as caught:
        Optim.parse(text)
    assert str(caught.value).startswith("Optim.parse: parameter 'text' ")
    assert "lrkit_was_run" not in sys.modules


def test_of_passes_an_optim_through_and_names_the_caller() -> None:
    o = Optim("adam")
    assert Optim.of(o) is o and Optim.of("adam") == o
    with pytest.raises(LabTypeError, match=r"Member: parameter 'optimizer' must be an lrkit\.Optim"):
        Optim.of(3, "Member", "optimizer")  # type: ignore[arg-type]
    with pytest.raises(LabError, match=r"Optim\.from_dict: parameter 'data' has unknown keys \['lr'\]"):
        Optim.from_dict({"family": "sgd", "lr": 0.1})


def test_parse_list_keeps_commas_inside_parentheses() -> None:
    got = parse_list("sgd, sgd(momentum=0.9, weight_decay=0.1),adam,rmsprop(momentum=0.5, beta2=0.9, centered=True)")
    assert got == [
        Optim("sgd"),
        Optim("sgd", momentum=0.9, weight_decay=0.1),
        Optim("adam"),
        Optim("rmsprop", momentum=0.5, beta2=0.9, centered=True),
    ]
    for empty in ("", " , "):
        with pytest.raises(LabError, match="at least one optimizer"):
            parse_list(empty)
    with pytest.raises(LabError, match="parse_list: parameter 'optimizer'"):
        parse_list("sgd,lion")


def test_review_fixes_unused_fields_groups_and_decoupled_adam() -> None:
    for bad in (dict(family="adagrad", momentum=0.9), dict(family="sgd", eps=1e-8), dict(family="sgd", beta2=0.5)):
        with pytest.raises(LabError, match="is not used by"):
            lrkit.Optim(**bad)
    assert lrkit.Optim("sgd", eps=0.0).eps == 0.0  # the default value itself is harmless
    with pytest.raises(LabError, match="literal values only"):
        lrkit.Optim.parse("sgd(momentum={[1]: 2})")
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(LabError, match="decoupled_weight_decay"):
        lrkit.Optim.from_torch(torch.optim.Adam(w, decoupled_weight_decay=True, weight_decay=0.1))
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    two = torch.optim.SGD([{"params": [a], "momentum": 0.9}, {"params": [b], "momentum": 0.0, "lr": 0.5}], lr=0.1)
    with pytest.raises(LabError, match="every param group"):
        lrkit.Optim.from_torch(two)
    same = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert lrkit.Optim.from_torch(same) == lrkit.Optim("sgd", momentum=0.9)
