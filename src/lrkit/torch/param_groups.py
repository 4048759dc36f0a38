"""`lrkit.param_groups`: optimizer param groups per block of a model, with layer-wise lrs and no decay on biases and norms.

How the blocks are found: the model's direct children, in order, each one block,
the last one holding parameters being the head; a child that is an `nn.ModuleList`
is replaced by its items (a transformer's blocks), and a child that holds a
`ModuleList` somewhere below is replaced by its own children, found the same way.
So a `BertForSequenceClassification` gives `bert.embeddings`, `bert.encoder.layer.0`,
..., `bert.pooler`, `classifier`, a GPT-2 `wte`, `wpe`, `h.0`, ..., `ln_f`, and an
`nn.Sequential` CNN its layers. Parameters registered on a module itself (a ViT's
`cls_token`) form a block before its children; a shared (tied) parameter belongs
to the first block that holds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from lrkit import validate
from lrkit.errors import ScheduleError

Owned = tuple[str, torch.nn.Parameter, torch.nn.Module]  # (qualified name, parameter, the module that registers it)
Block = tuple[str, list[Owned]]


def param_groups(
    model: torch.nn.Module,
    lr: float,
    *,
    weight_decay: float = 0.0,
    no_decay: Sequence[str] = ("bias", "norm"),
    layer_decay: float | None = None,
    lr_range: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Param groups for `torch.optim`: one per block (see the module), in order, the head last.

    Args:
        model: the model (its trainable parameters are grouped; frozen ones are left out).
        lr: the head's lr.
        weight_decay: the decay of every parameter but the `no_decay` ones; when > 0
            each block is split into a decayed and a non-decayed group.
        no_decay: a parameter gets weight decay 0 when one of these appears (lower case)
            in its qualified name or in its module's class name (so GPT-2's `ln_1`, a
            `LayerNorm`, counts as "norm").
        layer_decay: the k-th block below the head gets `lr * layer_decay**k`, in (0, 1].
        lr_range: `(lo, hi)`: lrs log-evenly from `lo` (the first block) to `hi` (the head,
            which must equal `lr`), fastai's `slice(lo, hi)`. Exclusive with `layer_decay`.

    Each group has `params`, `lr`, `weight_decay` and `name` (the block's). `lrkit.Scheduler`
    keeps the groups' ratios; its schedule is then the *first* group's lr, so pass
    `group_scales=[g["lr"] / lr for g in groups]` to make the schedule the head's lr.

    Example:
        >>> import torch, lrkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
        >>> groups = lrkit.param_groups(model, 1e-2, layer_decay=0.5)
        >>> [(g["name"], g["lr"]) for g in groups]
        [('0', 0.0025), ('1', 0.005), ('2', 0.01)]
        >>> [(g["name"], g["weight_decay"]) for g in lrkit.param_groups(model, 1e-2, weight_decay=0.1)]
        [('0', 0.1), ('0', 0.0), ('1', 0.0), ('2', 0.1), ('2', 0.0)]
    """
    validate.instance("param_groups", "model", model, ScheduleError, torch.nn.Module, "a torch.nn.Module")
    head_lr = validate.positive("param_groups", "lr", lr, ScheduleError)
    decay = validate.non_negative("param_groups", "weight_decay", weight_decay, ScheduleError)
    patterns = _patterns(no_decay)
    blocks = [b for b in find_blocks(model) if b[1]]
    if not blocks:
        validate.fail("param_groups", "model", "must have trainable parameters", type(model).__name__, ScheduleError)
    lrs = _block_lrs(len(blocks), head_lr, layer_decay, lr_range)
    groups: list[dict[str, Any]] = []
    for (name, params), block_lr in zip(blocks, lrs):
        groups.extend(_split(name, params, block_lr, decay, patterns))
    return groups


def find_blocks(model: torch.nn.Module, prefix: str = "") -> list[Block]:
    """The blocks of `model` in order (see the module), each with its trainable parameters not already taken.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.ModuleList([torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)]), torch.nn.Linear(1, 1))
        >>> [name for name, _ in find_blocks(model)]
        ['0.0', '0.1', '1']
    """
    seen: set[int] = set()
    blocks: list[Block] = []
    stack: list[tuple[str, torch.nn.Module, bool]] = [(prefix, model, True)]
    while stack:  # depth first, children in order: a loop, so a deep model cannot hit the recursion limit
        name, module, expand = stack.pop()
        if not expand:
            blocks.append((name, _owned(module, name, seen, recurse=True)))
            continue
        own = _owned(module, name, seen, recurse=False)
        if own:
            blocks.append((f"{name}.(own)" if name else "(own)", own))
        children = [(f"{name}.{n}" if name else n, child) for n, child in module.named_children()]
        stack.extend((n, c, _holds_module_list(c)) for n, c in reversed(children))
    return blocks


def _holds_module_list(module: torch.nn.Module) -> bool:
    """Whether `module` is or contains an `nn.ModuleList` (then its children, not itself, are blocks)."""
    return any(isinstance(m, torch.nn.ModuleList) for m in module.modules())


def _owned(module: torch.nn.Module, name: str, seen: set[int], recurse: bool) -> list[Owned]:
    """The trainable parameters of `module` (and below, with `recurse`) not taken by an earlier block, with their owners."""
    found = []
    owners = module.named_modules(prefix=name) if recurse else [(name, module)]
    for owner_name, owner in owners:
        for pname, p in owner.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                found.append((f"{owner_name}.{pname}" if owner_name else pname, p, owner))
    return found


def _patterns(no_decay: Any) -> tuple[str, ...]:
    items = validate.sequence("param_groups", "no_decay", no_decay, ScheduleError)
    for item in items:
        validate.instance("param_groups", "no_decay", item, ScheduleError, str, "a list of strings")
    return tuple(p.lower() for p in items)


def _block_lrs(n: int, lr: float, layer_decay: Any, lr_range: Any) -> list[float]:
    """Each block's lr, the head's (`lr`) last."""
    if layer_decay is not None and lr_range is not None:
        validate.fail("param_groups", "lr_range", "cannot be given together with layer_decay (choose one)", lr_range, ScheduleError)
    if layer_decay is not None:
        d = validate.in_range("param_groups", "layer_decay", layer_decay, ScheduleError, 0.0, 1.0, open_low=True)
        return [lr * d ** (n - 1 - i) for i in range(n)]
    if lr_range is None:
        return [lr] * n
    lo, hi = _checked_range(lr_range, lr)
    if n == 1:
        return [hi]
    return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n - 1)] + [hi]


def _checked_range(lr_range: Any, lr: float) -> tuple[float, float]:
    items = validate.sequence("param_groups", "lr_range", lr_range, ScheduleError)
    validate.length("param_groups", "lr_range", items, ScheduleError, 2, "(lo, hi)")
    lo, hi = (validate.positive("param_groups", "lr_range", v, ScheduleError) for v in items)
    if lo > hi:
        validate.fail("param_groups", "lr_range", "must be (lo, hi) with lo <= hi", lr_range, ScheduleError)
    if not math.isclose(hi, lr, rel_tol=1e-12):
        validate.fail("param_groups", "lr_range", f"must end at the head's lr ({lr!r}): hi is the head's lr", lr_range, ScheduleError)
    return lo, hi


def _split(name: str, params: list[Owned], lr: float, decay: float, patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """A block's group, or its decayed and non-decayed groups when `decay` > 0 (an empty one left out)."""
    if decay == 0:
        return [{"params": [p for _, p, _ in params], "lr": lr, "weight_decay": 0.0, "name": name}]
    free = [any(pat in qn.lower() or pat in type(owner).__name__.lower() for pat in patterns) for qn, _, owner in params]
    decayed = [p for (_, p, _), f in zip(params, free) if not f]
    kept = [p for (_, p, _), f in zip(params, free) if f]
    pairs = [(decayed, decay), (kept, 0.0)]
    return [{"params": ps, "lr": lr, "weight_decay": wd, "name": name} for ps, wd in pairs if ps]
