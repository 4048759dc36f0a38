"""The same batches for every member: the data's random state, saved the first time an epoch is read and restored after.

A DataLoader draws its shuffle from torch's global generator, or from its own `generator` (or its
sampler's). `SameBatches.around` seeds the global generator with the search's seed inside
`torch.random.fork_rng` (the caller's random state is given back afterwards, and so are the data's
own generators), and `at(epoch)` gives the callable that puts the random state where it was when
the epoch was first read: every chunk of a population and every plain run then draws the same
batches, and dropout draws from the same stream.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> loader = DataLoader(TensorDataset(torch.arange(6.0), torch.arange(6.0)), batch_size=3, shuffle=True)
    >>> with SameBatches.around(loader, seed=0) as same:
    ...     same.at(1)()
    ...     first = [b[0].tolist() for b in loader]
    ...     same.at(1)()
    ...     again = [b[0].tolist() for b in loader]
    >>> first == again
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

State = tuple[Any, list[Any], list[Any]]  # the CPU generator's state, each CUDA device's, each of the data's own generators'


def data_generators(source: Any) -> list[torch.Generator]:
    """The `torch.Generator`s a DataLoader shuffles with: its own, its sampler's, its batch sampler's sampler's.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader
        >>> g = torch.Generator()
        >>> data_generators(DataLoader(list(range(4)), shuffle=True, generator=g)) == [g]
        True
    """
    import torch

    found: dict[int, torch.Generator] = {}
    holders = [source, getattr(source, "sampler", None), getattr(getattr(source, "batch_sampler", None), "sampler", None)]
    for holder in holders:
        g = getattr(holder, "generator", None)
        if isinstance(g, torch.Generator):
            found.setdefault(id(g), g)
    return list(found.values())


class SameBatches:
    """Per-epoch snapshots of the random state the data and dropout draw from."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.generators = generators
        self.states: dict[int, State] = {1: self.capture()}

    @classmethod
    @contextmanager
    def around(cls, source: Any, seed: int) -> Iterator[SameBatches]:
        """Inside: the global generator seeded with `seed`; after: every generator as the caller left it."""
        import torch

        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        generators = data_generators(source)
        before = [g.get_state() for g in generators]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            try:
                yield cls(generators)
            finally:
                for g, state in zip(generators, before):
                    g.set_state(state)

    def capture(self) -> State:
        """The random state now."""
        import torch

        cuda = [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())] if torch.cuda.is_initialized() else []  # type: ignore[no-untyped-call]
        return torch.get_rng_state(), cuda, [g.get_state() for g in self.generators]

    def restore(self, state: State) -> None:
        """Put the random state back to `state`."""
        import torch

        cpu, cuda, own = state
        torch.set_rng_state(cpu)
        for d, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, d)
        for g, s in zip(self.generators, own):
            g.set_state(s)

    @classmethod
    @contextmanager
    def replay(cls, source: Any, states: dict[int, State]) -> Iterator[SameBatches]:
        """`around` for a copy of the data in another process (a Ray worker): every epoch restores the state `states`
        recorded for it (`ahead`, in the driver), so every shard of a search draws the batches of every other."""
        with cls.around(source, 0) as same:
            same.states = {epoch: _on_this_machine(state) for epoch, state in states.items()}
            yield same

    def ahead(self, epochs: int, read: Callable[[], None]) -> dict[int, State]:
        """Every epoch's state up to `epochs`, recorded by reading the data (`read()`: one pass) without training.

        These are the states a training pass records when it draws no random numbers of its own (no dropout),
        whatever ran before: the states a worker replays. A pass that draws (dropout) moves the global generator
        further, so there its own later epochs would start elsewhere; replaying these keeps the batches shared.

        Example:
            >>> import torch
            >>> from torch.utils.data import DataLoader
            >>> loader = DataLoader(list(range(6)), batch_size=3, shuffle=True)
            >>> with SameBatches.around(loader, seed=0) as same:
            ...     states = same.ahead(2, lambda: [b for b in loader])
            ...     second = (same.at(2)(), [b.tolist() for b in loader])[1]
            >>> with SameBatches.replay(loader, states) as again:
            ...     replayed = (again.at(2)(), [b.tolist() for b in loader])[1]
            >>> sorted(states), replayed == second
            ([1, 2], True)
        """
        for epoch in range(1, epochs + 1):
            self.at(epoch)()
            read()
        return dict(self.states)

    def at(self, epoch: int) -> Callable[[], None]:
        """The callable run before reading epoch `epoch`: restores its first reading's state, or saves it on the first."""

        def enter() -> None:
            if epoch in self.states:
                self.restore(self.states[epoch])
            else:
                self.states[epoch] = self.capture()

        return enter


def _on_this_machine(state: State) -> State:
    """A state recorded elsewhere, with the CUDA devices this process sees (a Ray worker often sees one GPU)."""
    import torch

    cpu, cuda, own = state
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return cpu, cuda[:visible], own
