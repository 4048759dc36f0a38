"""The one minibatch order of lrkit: a fresh permutation per epoch from a seeded generator.

Every piece that trains on a problem's tensors (the lab's population, the finder
benchmark, the landscape's network paths, the search, the tests' reference runs)
draws its batches here, so "the same seed" means the same batches everywhere:
per epoch `torch.randperm(n, generator=g)` with `g = torch.Generator().manual_seed(seed)`,
cut into consecutive slices of `batch_size`; the last, partial batch is kept (as a
`DataLoader(shuffle=True)` does with `drop_last=False`).

Example:
    >>> import torch
    >>> order = MinibatchOrder(n=5, seed=0)
    >>> [b.tolist() for b in order.epoch(batch_size=2)]
    [[4, 0], [1, 3], [2]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from lrkit import validate
from lrkit.errors import LrkitValueError


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """The consecutive slices of one epoch of `n` examples: full batches, then the partial one.

    Example:
        >>> batch_slices(5, 2)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer updates in one epoch: `ceil(n / batch_size)` (the partial batch counts).

    Example:
        >>> steps_per_epoch(500, 32)
        16
    """
    return math.ceil(n / batch_size)


class MinibatchOrder:
    """The per-epoch shuffles of `n` examples for one seed; call `epoch()` once per epoch, in order.

    Args:
        n: the number of training examples (>= 1).
        seed: the data-order seed (>= 0); equal seeds give equal orders.

    Example:
        >>> a, b = MinibatchOrder(10, seed=3), MinibatchOrder(10, seed=3)
        >>> bool((a.permutation() == b.permutation()).all())
        True
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = validate.integer("MinibatchOrder", "n", n, LrkitValueError)
        self.seed = validate.seed("MinibatchOrder", "seed", seed, LrkitValueError)
        self.generator = torch.Generator().manual_seed(self.seed)

    def permutation(self) -> torch.Tensor:
        """The next epoch's order of the examples (a CPU int64 tensor of length n).

        Example:
            >>> MinibatchOrder(3, seed=0).permutation().tolist()
            [2, 0, 1]
        """
        return torch.randperm(self.n, generator=self.generator)

    def epoch(self, batch_size: int, device: torch.device | str | None = None) -> list[torch.Tensor]:
        """The next epoch's minibatches as index tensors (on `device`), the partial batch last.

        Example:
            >>> [len(b) for b in MinibatchOrder(10, seed=0).epoch(batch_size=4)]
            [4, 4, 2]
        """
        size = validate.integer("MinibatchOrder.epoch", "batch_size", batch_size, LrkitValueError)
        perm = self.permutation()
        if device is not None:
            perm = perm.to(device)
        return [perm[s] for s in batch_slices(self.n, size)]


def epoch_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, epochs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The `(inputs, targets)` minibatches of `epochs` epochs over `x`, `y` in lrkit's order for `seed`.

    Example:
        >>> import torch
        >>> x = torch.arange(5.0)
        >>> [b[0].tolist() for b in epoch_batches(x, x, batch_size=2, seed=0, epochs=1)]
        [[4.0, 0.0], [1.0, 3.0], [2.0]]
    """
    order = MinibatchOrder(len(x), seed)
    for _ in range(validate.integer("epoch_batches", "epochs", epochs, LrkitValueError)):
        for idx in order.epoch(batch_size, x.device):
            yield x[idx], y[idx]
