"""The checks `search_lr` makes on one model and one batch before any training, and whether the model batches.

A model batches when the stacked forward of two copies (`lrkit.lab.stacked.StackedModel`:
batched matrix products for a plain MLP, `torch.func.vmap` over `functional_call` for any other)
gives the plain module's outputs, and its loss differentiates under it. Otherwise the search
says why and trains the members one after another as plain runs: never a wrong answer.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import torch.nn.functional as F
    >>> from lrkit.optim import Optim
    >>> batch = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
    >>> p = probe_model(lambda: nn.Linear(3, 2), F.cross_entropy, Optim("sgd"), batch, batch, None, 0, None)
    >>> p.task, p.batchable, p.device.type
    ('classification', True, 'cpu')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import FinderError
from lrkit.optim import Optim
from lrkit.search.grid import FUNC
from lrkit.torch.search.inputs import Batch, Metric

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

SAME_RTOL, SAME_ATOL = 1e-4, 1e-5  # the stacked forward against the plain module's (float32 reductions reorder)


@dataclasses.dataclass
class Probe:
    """What the checks found: the model (built from `seed`), the batch on its device, the loss lrkit knows, batchability."""

    make_model: Callable[[], torch.nn.Module]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    model: torch.nn.Module
    batch: Batch
    device: torch.device
    task: str | None
    batchable: bool
    warnings: list[str]


def probe_model(
    make_model: Any, loss_fn: Any, optim: Optim, batch: Batch, val_batch: Batch, metric: Metric | None, seed: int, device: Any
) -> Probe:
    """Build one model, run one batch, and check the model, the loss and the metric (clear errors before any training)."""
    import torch

    for param, fn in (("make_model", make_model), ("loss_fn", loss_fn)):
        if not callable(fn):
            validate.wrong_type(FUNC, param, "must be callable", type(fn).__name__, FinderError)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    if not isinstance(model, torch.nn.Module):
        validate.wrong_type(FUNC, "make_model", "must return a torch.nn.Module", type(model).__name__, FinderError)
    if not any(p.requires_grad for p in model.parameters()):
        validate.fail(FUNC, "make_model", "must return a module with trainable parameters", type(model).__name__, FinderError)
    where = _device(model, device)
    model.to(where)
    x, y = (t.to(where) for t in batch)
    out = model(x)
    loss = loss_fn(out, y)
    if not validate.is_tensor(loss) or loss.numel() != 1:
        shape = tuple(loss.shape) if validate.is_tensor(loss) else type(loss).__name__
        validate.fail(FUNC, "loss_fn", "must return the mean loss as a scalar tensor (e.g. reduction='mean')", shape, FinderError)
    if not math.isfinite(float(loss.detach())):
        validate.fail(FUNC, "loss_fn", "must be finite for the untrained model on the first batch", float(loss.detach()), FinderError)
    if metric is not None:
        _check_metric(model, metric, val_batch, where)
    task = known_task(loss_fn, out.detach(), y)
    reason = _unbatchable(make_model, loss_fn, (x, y), task, seed, where)
    warns = [] if reason is None else [f"{FUNC}: the model cannot be batched ({reason}); its candidates train one after another"]
    return Probe(make_model, loss_fn, model, (x, y), where, task, reason is None, warns)


def _device(model: torch.nn.Module, device: Any) -> torch.device:
    import torch

    if device is None:
        return next(model.parameters()).device
    try:
        where = torch.device(device)
        torch.empty(0, device=where)
    except (RuntimeError, TypeError, ValueError) as e:
        validate.fail(FUNC, "device", f"must be a torch device available here ({e})", device, FinderError)
    return where


def _check_metric(model: torch.nn.Module, metric: Metric, batch: Batch, device: torch.device) -> None:
    import torch

    x, y = (t.to(device) for t in batch)
    model.eval()
    with torch.no_grad():
        value = metric(model(x), y)
    model.train()
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        validate.fail(FUNC, "metric", "must return one number (higher is better)", type(value).__name__, FinderError)
    if math.isnan(number):
        validate.fail(FUNC, "metric", "must return a number, not NaN, for the untrained model", number, FinderError)


def known_task(loss_fn: Any, out: torch.Tensor, y: torch.Tensor) -> str | None:
    """The task ("classification" or "regression") when `loss_fn` is a loss lrkit computes itself (checked on this batch), else None.

    Known: `F.cross_entropy` and a default `nn.CrossEntropyLoss()` on logits and class indices, `F.mse_loss` and
    `nn.MSELoss()` on outputs shaped like the targets, and a built-in lab problem's `problem.loss`.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> known_task(F.mse_loss, torch.zeros(4), torch.ones(4)), known_task(lambda o, t: o.sum(), torch.zeros(2), torch.zeros(2))
        ('regression', None)
    """
    import torch

    from lrkit.lab.problems import Problem

    task = _named_task(loss_fn)
    # the shapes lrkit's own losses read as one sample axis: logits (N, C) and classes (N,), or outputs (N,) / (N, 1) and targets (N,)
    if task == "classification" and not (out.dim() == 2 and y.dim() == 1 and not torch.is_floating_point(y)):
        return None
    if task is None or (task == "regression" and not (y.dim() == 1 and out.shape in (y.shape, (*y.shape, 1)))):
        return None
    view = problem_view(lambda: torch.nn.Identity(), (out, y), task)
    with torch.no_grad():
        ours, theirs = float(Problem.loss(view, out, y)), float(loss_fn(out, y))
    return task if math.isclose(ours, theirs, rel_tol=1e-5, abs_tol=1e-7) else None


def _named_task(loss_fn: Any) -> str | None:
    from torch import nn
    from torch.nn import functional as F

    from lrkit.lab.problems import Problem

    owner = getattr(loss_fn, "__self__", None)
    if isinstance(owner, Problem) and getattr(loss_fn, "__func__", None) is Problem.loss and type(owner).losses is Problem.losses:
        return owner.task
    default_ce = type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.reduction == "mean"
    if loss_fn is F.cross_entropy or (default_ce and loss_fn.label_smoothing == 0.0):
        return "classification"
    if loss_fn is F.mse_loss or (type(loss_fn) is nn.MSELoss and loss_fn.reduction == "mean"):
        return "regression"
    return None


def problem_view(make_model: Callable[[], torch.nn.Module], batch: Batch, task: str | None) -> Problem:
    """The model and one batch as an `lrkit.lab.problems.Problem`, the description `StackedModel` builds from.

    Example:
        >>> import torch
        >>> problem_view(lambda: torch.nn.Linear(2, 1), (torch.zeros(3, 2), torch.zeros(3, 1)), None).task
        'regression'
    """
    from lrkit.lab.problems import Problem

    x, y = batch
    return Problem("search", task or "regression", x, y, x, y, 0, len(x), 1, 0.01, make_model)


def _unbatchable(
    make_model: Callable[[], torch.nn.Module], loss_fn: Any, batch: Batch, task: str | None, seed: int, device: torch.device
) -> str | None:
    """Why two stacked copies of the model do not reproduce it (None when they do)."""
    import torch
    from torch.func import vmap

    from lrkit.lab.stacked import StackedModel

    x, y = batch
    try:
        stacked = StackedModel(problem_view(make_model, batch, task), [seed, seed], device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = make_model().to(device).eval()  # untouched by a training-mode pass, as the stacked copies are
        with torch.no_grad(), stacked.evaluating():
            plain, both = fresh(x), stacked(x, shared=True)
        if both.shape[1:] != plain.shape or not torch.allclose(both, plain.expand_as(both), rtol=SAME_RTOL, atol=SAME_ATOL):
            return "its stacked outputs differ from the module's own"
        losses = vmap(loss_fn, in_dims=(0, None))(stacked(x, shared=True), y)
        torch.autograd.grad(losses.sum(), [p for p in stacked.params if p.requires_grad])
    except Exception as e:  # whatever torch.func refuses (data-dependent control flow, .item(), in-place on captured tensors)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None
