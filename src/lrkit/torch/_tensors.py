"""Small tensor helpers shared by the torch layer: the one CPU-copy of nested state.

Example:
    >>> import torch
    >>> saved = cpu_copy({"w": torch.ones(2), "step": 3})
    >>> saved["w"].device.type, saved["step"]
    ('cpu', 3)
"""

from __future__ import annotations

import copy
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
