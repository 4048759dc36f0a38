"""The range test's batches and signals: cycling the training data, moving batches, computing loss and metric.

Example:
    >>> batches = Batches(iter([1, 2]))
    >>> [next(batches) for _ in range(5)]
    [1, 2, 1, 2, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from lrkit import validate
from lrkit.errors import FinderError

StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]
Compute = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, float | None]]  # (model, batch) -> (loss, metric or None)
FUNC = "find_lr"
_END = object()


class Batches:
    """Cycles over the training data; a one-shot iterator's batches are kept so they can be cycled too.

    Example:
        >>> batches = Batches([[0], [1]])
        >>> [next(batches) for _ in range(3)]
        [[0], [1], [0]]
    """

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = validate.instance(FUNC, "train_data", data, FinderError, Iterable, "an iterable of batches")
        self.iterator: Iterator[Any] = iter(data)
        self.one_shot = self.iterator is data
        self.kept: list[Any] = []
        first = next(self.iterator, _END)
        if first is _END:
            validate.fail(FUNC, "train_data", "must yield at least one batch", data, FinderError)
        self.pending = [first]
        if self.one_shot:
            self.kept.append(first)

    def __next__(self) -> Any:
        if self.pending:
            return self.pending.pop()
        batch = next(self.iterator, _END)
        if batch is _END:
            if self.one_shot:
                self.data, self.one_shot = self.kept, False  # from now on the kept batches are cycled
            self.iterator = iter(self.data)
            batch = next(self.iterator)
        elif self.one_shot:
            self.kept.append(batch)
        return batch


def to_device(obj: Any, device: torch.device) -> Any:
    """`obj` with every tensor in it (dicts, lists and tuples are walked) moved to `device`.

    Example:
        >>> import torch
        >>> to_device({"x": [torch.ones(1)]}, torch.device("cpu"))["x"][0].device.type
        'cpu'
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def make_compute(loss_fn: Any, step_fn: StepFn | None, metric: Any) -> Compute:
    """The loss of a batch and, with `metric`, the metric of the same forward pass (or of `metric(model, batch)`).

    Example:
        >>> import torch
        >>> compute = make_compute(torch.nn.functional.mse_loss, None, None)
        >>> loss, metric = compute(torch.nn.Identity(), (torch.zeros(2), torch.ones(2)))
        >>> float(loss), metric
        (1.0, None)
    """
    if step_fn is not None:
        custom: StepFn = step_fn

        def with_step_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, float | None]:
            loss = custom(model, batch)
            if metric is None:
                return loss, None
            with torch.no_grad():
                return loss, float(metric(model, batch))

        return with_step_fn

    def with_loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, float | None]:
        inputs, targets = _pair(batch)
        outputs = model(inputs)
        loss = loss_fn(outputs, targets)
        return loss, None if metric is None else float(metric(outputs.detach(), targets))

    return with_loss_fn


def _pair(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        validate.wrong_type(FUNC, "train_data", "must yield (inputs, targets) batches, or pass step_fn", type(batch).__name__, FinderError)
    return batch[0], batch[1]


def scalar_loss(loss: Any) -> torch.Tensor:
    """The loss as a 0-d tensor that backpropagates to the model; anything else is a clear `FinderError`.

    Example:
        >>> import torch
        >>> scalar_loss(torch.ones(1, requires_grad=True)).shape
        torch.Size([])
    """
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        validate.fail(FUNC, "loss_fn", "must return a scalar floating-point tensor", shape, FinderError)
    if not loss.requires_grad:
        validate.fail(FUNC, "loss_fn", "must return a loss that depends on the model's parameters", "no grad", FinderError)
    return loss.reshape(())
