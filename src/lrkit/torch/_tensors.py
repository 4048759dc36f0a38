"""Small tensor helpers shared by the torch layer: the one CPU-copy of nested state, the one finiteness check.

Example:
    >>> import torch
    >>> saved = cpu_copy({"w": torch.ones(2), "step": 3})
    >>> saved["w"].device.type, saved["step"]
    ('cpu', 3)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch


def cpu_copy(obj: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor detached and copied to the CPU.

    Snapshots (the range test's transaction, the guard's rollback point, early stopping's
    best weights) are kept on the CPU so they cost no accelerator memory.

    Example:
        >>> cpu_copy({"a": [1, (2.0, "x")]})
        {'a': [1, (2.0, 'x')]}
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, cpu_copy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every tensor (gradients, weights) is finite, with one sync: a sum is NaN/inf when an element is (or all are huge).

    Example:
        >>> all_finite([torch.ones(2), torch.zeros(3)]), all_finite([torch.tensor([1.0, float("nan")])])
        (True, False)
    """
    if not tensors:
        return True
    if len({t.device for t in tensors}) > 1:
        return all(bool(torch.isfinite(t.detach().sum()).item()) for t in tensors)
    if sum(t.numel() for t in tensors) <= 1 << 20:  # small models: one concatenation costs less than an op per tensor
        return bool(torch.isfinite(torch.cat([t.detach().reshape(-1) for t in tensors]).sum()).item())
    return bool(torch.isfinite(torch.stack([t.detach().sum() for t in tensors]).sum()).item())
