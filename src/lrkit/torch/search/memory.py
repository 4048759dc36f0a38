"""How many members of a search fit in memory at once: a per-member estimate against what the device has free.

A member holds its weights, their gradients, its optimizer state and buffers, and, while a batch
runs, the activations autograd saves for the backward pass (measured on one forward pass of one
member with `torch.autograd.graph.saved_tensors_hooks`, counted twice: the batched forward keeps
its own copies). On CUDA the budget is the device's free memory (`torch.cuda.mem_get_info`), on
a CPU half the machine's available memory; `max_memory=` (bytes) overrides either.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import torch.nn.functional as F
    >>> from lrkit.optim import Optim
    >>> need = member_bytes(nn.Linear(10, 2), Optim("adam"), F.cross_entropy, (torch.zeros(8, 10), torch.zeros(8, dtype=torch.long)))
    >>> need > 4 * 22 * 4, chunk_size(100, need, 10 * need)
    (True, 10)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import FinderError
from lrkit.lab.optim import STATE
from lrkit.optim import Optim
from lrkit.search.grid import FUNC
from lrkit.torch.search.inputs import Batch

if TYPE_CHECKING:
    import torch

CPU_SHARE = 0.5  # of the machine's available memory a search may take on a CPU
CUDA_SHARE = 0.9  # of the device's free memory on CUDA (the allocator's caches and fragmentation take the rest)


def member_bytes(model: torch.nn.Module, optim: Optim, loss_fn: Callable[..., Any], batch: Batch) -> int:
    """The bytes one member needs: weights, gradients, optimizer state, buffers and one batch's saved activations.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> member_bytes(nn.Linear(3, 1), Optim("sgd"), torch.nn.functional.mse_loss, (torch.zeros(2, 3), torch.zeros(2, 1))) > 0
        True
    """
    import torch

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    x, y = batch
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.random.fork_rng(devices=[]):
        out = model(x)
        loss_fn(out, y)
    states = len(STATE[optim.family])
    output = int(out.numel() * out.element_size())
    return weights * (2 + states) + buffers + 2 * saved + output


def available_bytes(device: torch.device, max_memory: int | None) -> int:
    """The memory a search may use on `device`: `max_memory` if given, else the device's free share.

    Example:
        >>> import torch
        >>> available_bytes(torch.device("cpu"), 2**30)
        1073741824
    """
    import torch

    if max_memory is not None:
        return validate.integer(FUNC, "max_memory", max_memory, FinderError)
    if device.type == "cuda":
        free: int = torch.cuda.mem_get_info(device)[0]
        return int(free * CUDA_SHARE)
    return int(_cpu_available() * CPU_SHARE)


def _cpu_available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is optional: the kernel's count, where it has one
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def chunk_size(members: int, per_member: int, budget: int) -> int:
    """How many of `members` to train at once in `budget` bytes (a clear error when not even one fits).

    Example:
        >>> try:
        ...     chunk_size(10, 2**30, 2**20)
        ... except FinderError as e:
        ...     print(str(e)[:76])
        search_lr: parameter 'max_memory' must leave room for one member (about 1024
    """
    if per_member > budget:
        need = f"must leave room for one member (about {per_member / 2**20:.0f} MiB; {budget / 2**20:.0f} MiB available)"
        validate.fail(FUNC, "max_memory", need, budget, FinderError)
    return max(1, min(members, budget // max(per_member, 1)))
