"""`lrkit.Optim`: the one optimizer spec of lrkit (lab, landscape, finder CLI, benchmarks, search).

An `Optim` is a frozen, picklable value naming a `torch.optim` family and its
hyperparameters; `None` fields take torch.optim's defaults, so a name means what
it means in torch: `Optim("sgd")` is plain SGD (momentum 0), momentum SGD is
`Optim("sgd", momentum=0.9)`. torch is imported only by `to_torch` and `from_torch`.

Text specs (the CLI's `--optimizer`) are a family name, optionally with literal
keyword arguments: `adam`, `sgd(momentum=0.9)`, `adamw(weight_decay=0.1)`; they are
read without `eval`, and `Optim.parse(o.spec) == o`.

Example:
    >>> import lrkit
    >>> o = lrkit.Optim.parse("sgd(momentum=0.9)")
    >>> o.momentum, o.spec, lrkit.Optim.parse(o.spec) == o
    (0.9, 'sgd(momentum=0.9)', True)
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import LabError, LrkitValueError

if TYPE_CHECKING:
    import torch

# family -> torch.optim defaults: (momentum or beta1, beta2 or alpha, eps, weight_decay)
DEFAULTS: dict[str, tuple[float, float, float, float]] = {
    "sgd": (0.0, 0.0, 0.0, 0.0),
    "nesterov": (0.9, 0.0, 0.0, 0.0),
    "adagrad": (0.0, 0.0, 1e-10, 0.0),
    "rmsprop": (0.0, 0.99, 1e-8, 0.0),
    "adam": (0.9, 0.999, 1e-8, 0.0),
    "adamw": (0.9, 0.999, 1e-8, 1e-2),
}
FAMILIES: tuple[str, ...] = tuple(DEFAULTS)
"""The optimizer families an `lrkit.Optim` can be: torch's SGD (and Nesterov), Adagrad, RMSprop, Adam and AdamW.

Example:
    >>> FAMILIES
    ('sgd', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw')
"""
# torch.optim's own default lr of each family (tests/test_optim.py reads them from torch's signatures)
DEFAULT_LRS: dict[str, float] = {"sgd": 1e-3, "nesterov": 1e-3, "adagrad": 1e-2, "rmsprop": 1e-2, "adam": 1e-3, "adamw": 1e-3}
# the fields each family's torch optimizer reads (the others must stay unset or at their default)
USED: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "weight_decay"),
    "nesterov": ("momentum", "weight_decay"),
    "adagrad": ("eps", "weight_decay"),
    "rmsprop": ("momentum", "beta2", "eps", "weight_decay"),
    "adam": ("momentum", "beta2", "eps", "weight_decay"),
    "adamw": ("momentum", "beta2", "eps", "weight_decay"),
}
HELP = "an optimizer: sgd, nesterov, adagrad, rmsprop, adam or adamw, optionally with arguments, e.g. 'sgd(momentum=0.9)'"
_FIELDS = ("momentum", "beta2", "eps", "weight_decay")


@dataclasses.dataclass(frozen=True)
class Optim:
    """One optimizer: a torch.optim family and its hyperparameters (None: torch.optim's default).

    Args:
        family: "sgd", "nesterov" (SGD with Nesterov momentum), "adagrad", "rmsprop", "adam" or "adamw".
        momentum: SGD / Nesterov / RMSprop momentum, or Adam's `beta1`, in [0, 1).
        beta2: Adam's `beta2`, or RMSprop's `alpha`, in [0, 1).
        eps: the denominator's epsilon (AdaGrad, RMSprop, Adam), >= 0.
        weight_decay: L2 added to the gradient (decoupled for AdamW), >= 0.
        centered: RMSprop's centered variant.

    Example:
        >>> Optim("adamw")
        Optim(family='adamw', momentum=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01, centered=False)
        >>> type(Optim("nesterov").to_torch([__import__("torch").zeros(1, requires_grad=True)], lr=0.1)).__name__
        'SGD'
    """

    family: str = "sgd"
    momentum: float | None = None
    beta2: float | None = None
    eps: float | None = None
    weight_decay: float | None = None
    centered: bool = False

    def __post_init__(self) -> None:
        validate.choice("Optim", "family", self.family, LabError, FAMILIES)
        for field, default in zip(_FIELDS, DEFAULTS[self.family]):
            value = getattr(self, field)
            if value is not None and field not in USED[self.family] and value != default:
                uses = ", ".join(USED[self.family])
                validate.fail("Optim", field, f"is not used by {self.family} (it uses {uses})", value, LabError)
            if value is None:
                value = default
            elif field in ("momentum", "beta2"):
                value = validate.probability("Optim", field, value, LabError)
            else:
                value = validate.non_negative("Optim", field, value, LabError)
            object.__setattr__(self, field, value)
        if self.family == "nesterov" and not self.momentum:
            validate.fail("Optim", "momentum", "must be > 0 for Nesterov momentum", self.momentum, LabError)
        validate.flag("Optim", "centered", self.centered, LabError)
        if self.centered and self.family != "rmsprop":
            validate.fail("Optim", "centered", "may be True only for rmsprop", self.centered, LabError)

    @property
    def default_lr(self) -> float:
        """torch.optim's own default lr of this family.

        Example:
            >>> Optim("adam").default_lr, Optim("rmsprop").default_lr
            (0.001, 0.01)
        """
        return DEFAULT_LRS[self.family]

    @property
    def spec(self) -> str:
        """The short text form: the family and the fields that differ from its defaults.

        Example:
            >>> Optim("adam", weight_decay=0.1).spec
            'adam(weight_decay=0.1)'
        """
        given = {f: getattr(self, f) for f in _FIELDS if getattr(self, f) != DEFAULTS[self.family][_FIELDS.index(f)]}
        if self.centered:
            given["centered"] = True
        return self.family + (f"({', '.join(f'{k}={v!r}' for k, v in given.items())})" if given else "")

    @classmethod
    def parse(cls, text: str) -> Optim:
        """An `Optim` from its text spec: `adam`, `sgd(momentum=0.9)` (literal keyword arguments only).

        Example:
            >>> Optim.parse("rmsprop(momentum=0.5, centered=True)").centered
            True
        """
        return cls.of(text, "Optim.parse", "text")

    @classmethod
    def of(cls, value: Optim | str, func: str = "Optim.of", param: str = "optimizer") -> Optim:
        """`value` itself, or the `Optim` its text spec names; anything else is a clear error naming `func` and `param`.

        Example:
            >>> Optim.of("adam") == Optim("adam")
            True
        """
        if isinstance(value, Optim):
            return value
        if not isinstance(value, str):
            validate.wrong_type(func, param, f"must be an lrkit.Optim or {HELP}", value, LabError)
        try:
            node = ast.parse(value.strip(), mode="eval").body
        except SyntaxError:
            validate.fail(func, param, f"must be {HELP}", value, LabError)
        if isinstance(node, ast.Name):
            validate.choice(func, param, node.id, LabError, FAMILIES)
            return cls(node.id)
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args):
            validate.fail(func, param, f"must be {HELP}", value, LabError)
        validate.choice(func, param, node.func.id, LabError, FAMILIES)
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg not in (*_FIELDS, "centered"):
                valid = ", ".join((*_FIELDS, "centered"))
                validate.fail(func, param, f"has an unknown argument {kw.arg!r} (valid: {valid})", value, LabError)
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                validate.fail(func, param, "must give literal values only", value, LabError)
        return cls(node.func.id, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (JSON-ready); `Optim.from_dict` reads it back.

        Example:
            >>> Optim.from_dict(Optim("adam").to_dict()) == Optim("adam")
            True
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Optim:
        """The `Optim` of `to_dict()`.

        Example:
            >>> Optim.from_dict({"family": "sgd", "momentum": 0.9}).momentum
            0.9
        """
        if not isinstance(data, dict):
            validate.wrong_type("Optim.from_dict", "data", "must be a dict", data, LabError)
        unknown = set(data) - {"family", *_FIELDS, "centered"}
        if unknown:
            validate.fail("Optim.from_dict", "data", f"has unknown keys {sorted(unknown)}", data, LabError)
        return cls(**data)

    def to_torch(self, params: Iterable[Any], lr: float, *, foreach: bool | None = None) -> torch.optim.Optimizer:
        """The equivalent `torch.optim` optimizer (`foreach=False` forces the single-tensor code path).

        Example:
            >>> import torch
            >>> opt = Optim("adam", weight_decay=0.1).to_torch([torch.zeros(2, requires_grad=True)], lr=0.01)
            >>> type(opt).__name__, opt.param_groups[0]["weight_decay"]
            ('Adam', 0.1)
        """
        import torch

        m, b2, eps, wd = (float(getattr(self, f)) for f in _FIELDS)
        if self.family in ("sgd", "nesterov"):
            return torch.optim.SGD(params, lr=lr, momentum=m, nesterov=self.family == "nesterov", weight_decay=wd, foreach=foreach)
        if self.family == "adagrad":
            return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=wd, foreach=foreach)
        if self.family == "rmsprop":
            return torch.optim.RMSprop(
                params, lr=lr, alpha=b2, eps=eps, weight_decay=wd, momentum=m, centered=self.centered, foreach=foreach
            )
        kind = torch.optim.Adam if self.family == "adam" else torch.optim.AdamW
        return kind(params, lr=lr, betas=(m, b2), eps=eps, weight_decay=wd, foreach=foreach)

    @classmethod
    def from_torch(cls, optimizer: Any, func: str = "Optim.from_torch") -> Optim:
        """The spec of a `torch.optim` optimizer of a supported class (its lr is not part of the spec).

        Options lrkit's families do not model (SGD `dampening`, Adam `amsgrad`, ...) must be
        at their defaults; otherwise the error says which.

        Example:
            >>> import torch
            >>> Optim.from_torch(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)).spec
            'sgd(momentum=0.9)'
        """
        import torch

        supported = "torch.optim.SGD, Adagrad, RMSprop, Adam or AdamW"
        if not isinstance(optimizer, torch.optim.Optimizer):
            validate.wrong_type(func, "optimizer", f"must be an lrkit.Optim, a name or a {supported}", optimizer, LabError)
        g = optimizer.param_groups[0]
        per_group = ("params", "lr", "initial_lr")
        for other in optimizer.param_groups[1:]:
            if {k: v for k, v in other.items() if k not in per_group} != {k: v for k, v in g.items() if k not in per_group}:
                why = "must use the same hyperparameters in every param group (lrs apart)"
                validate.fail(func, "optimizer", why, type(optimizer).__name__, LabError)
        kind = type(optimizer)
        # options lrkit's families do not model, with the values at which they change nothing
        unmodelled: dict[type, dict[str, Any]] = {
            torch.optim.SGD: {"dampening": 0, "maximize": False},
            torch.optim.Adagrad: {"lr_decay": 0, "initial_accumulator_value": 0, "maximize": False},
            torch.optim.RMSprop: {"maximize": False},
            torch.optim.Adam: {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False},
            torch.optim.AdamW: {"amsgrad": False, "maximize": False},
        }
        if kind not in unmodelled:
            validate.fail(func, "optimizer", f"must be one of {supported} (lrkit's families)", kind.__name__, LabError)
        for key, default in unmodelled[kind].items():
            if g.get(key, default) != default:
                validate.fail(func, "optimizer", f"must have {key}={default!r} (lrkit does not model it)", g[key], LabError)
        wd = float(g.get("weight_decay", 0.0))
        if kind is torch.optim.SGD:
            return cls("nesterov" if g["nesterov"] else "sgd", momentum=float(g["momentum"]), weight_decay=wd)
        if kind is torch.optim.Adagrad:
            return cls("adagrad", eps=float(g["eps"]), weight_decay=wd)
        if kind is torch.optim.RMSprop:
            return cls("rmsprop", momentum=float(g["momentum"]), beta2=float(g["alpha"]), eps=float(g["eps"]), weight_decay=wd,
                       centered=bool(g["centered"]))  # fmt: skip
        family = "adam" if kind is torch.optim.Adam else "adamw"
        return cls(family, momentum=float(g["betas"][0]), beta2=float(g["betas"][1]), eps=float(g["eps"]), weight_decay=wd)


def split_specs(text: str) -> list[str]:
    """Comma-separated items, commas inside parentheses and brackets kept, blanks dropped (CLI lists of specs).

    Example:
        >>> split_specs("sgd, sgd(momentum=0.9, weight_decay=0.1), adam")
        ['sgd', 'sgd(momentum=0.9, weight_decay=0.1)', 'adam']
    """
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_list(
    text: str, func: str = "parse_list", param: str = "optimizer", *, read: Callable[[str, str, str], Optim] | None = None,
    error: type[LrkitValueError] = LabError,
) -> list[Optim]:  # fmt: skip
    """The `Optim`s of comma-separated specs (`split_specs`): `"sgd,sgd(momentum=0.9),adam"`.

    `read(item, func, param)` turns one item into an `Optim` (default `Optim.of`; the landscape also
    reads its "momentum" label); an empty list raises `error`.

    Example:
        >>> [o.spec for o in parse_list("sgd, sgd(momentum=0.9, weight_decay=0.1), adam")]
        ['sgd', 'sgd(momentum=0.9, weight_decay=0.1)', 'adam']
    """
    items = split_specs(text)
    if not items:
        validate.fail(func, param, f"must name at least one optimizer ({HELP})", text, error)
    return [(read or Optim.of)(p, func, param) for p in items]
