"""The training loop both engines run: members recorded per epoch, a rung of epochs over some runners, halving's cut.

The local engine runs every rung in this process; the Ray engine runs each rung's shards in Ray tasks,
each with the same `train_rung` over its own members (`lrkit.torch.search.ray_runner`), and decides the
survivors here, in the driver, with the same `survivors`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import torch.nn.functional as F
    >>> from lrkit.optim import Optim
    >>> from lrkit.schedules import constant
    >>> from lrkit.torch.search.runners import Setup
    >>> from lrkit.torch.search.rng import SameBatches
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> setup = Setup.of(lambda: nn.Linear(3, 2), F.cross_entropy, [constant(0.1), constant(1e300)], [0, 0], Optim("sgd"),
    ...                  steps=8, probe=(x, y), example=nn.Linear(3, 2), device=torch.device("cpu"))
    >>> rec = Records.empty(2, 1, 2, metric=False)
    >>> runners = make_runners(setup, True, [0, 1], size=2)
    >>> with SameBatches.around([(x, y)] * 4, seed=0) as same:
    ...     train_rung(runners, [(x, y)] * 4, [(x, y)], same, rec, range(1, 3), lambda n: None, setup.device)
    >>> rec.epochs_trained.tolist(), rec.diverged.tolist()
    ([[2], [0]], [[False], [True]])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lrkit.search.grid import halving_rungs
from lrkit.search.result import candidate_scores
from lrkit.torch.search.inputs import Batch
from lrkit.torch.search.rng import SameBatches
from lrkit.torch.search.runners import Batched, Runner, Sequential, Setup

if TYPE_CHECKING:
    import torch

ETA = 3  # successive halving keeps the best third of the candidates at each rung


@dataclasses.dataclass
class Records:
    """What the members recorded, (K, S, E) per candidate, seed and epoch (member m = candidate m // S, seed m % S).

    A shard's records hold its own members only: one row each (`rows`: member -> row, seed axis of 1).

    Example:
        >>> Records.empty(3, 2, 4, metric=True).at(5), Records.of_members([7, 9], 4, metric=False).at(9)
        ((2, 1), (1, 0))
    """

    val_loss: np.ndarray
    metric: np.ndarray | None
    epochs_trained: np.ndarray
    diverged: np.ndarray
    rows: dict[int, int] | None = None

    @classmethod
    def empty(cls, k: int, s: int, e: int, metric: bool) -> Records:
        """Nothing recorded yet for k candidates x s seeds x e epochs."""
        nan = np.full((k, s, e), np.nan)
        return cls(nan, nan.copy() if metric else None, np.zeros((k, s), dtype=np.int64), np.zeros((k, s), dtype=bool))

    @classmethod
    def of_members(cls, members: Sequence[int], e: int, metric: bool) -> Records:
        """Nothing recorded yet for these members (a shard's records)."""
        part = cls.empty(len(members), 1, e, metric)
        part.rows = {m: i for i, m in enumerate(members)}
        return part

    def at(self, m: int) -> tuple[int, int]:
        """Where member `m` is recorded: (candidate, seed), or (row, 0) in a shard's records."""
        if self.rows is not None:
            return self.rows[m], 0
        c, s = divmod(m, self.val_loss.shape[1])
        return c, s

    def absorb(self, part: Records, epochs: range) -> None:
        """Copy a shard's records of `epochs` (1-based) into these.

        Example:
            >>> rec, part = Records.empty(2, 1, 3, metric=False), Records.of_members([1], 3, metric=False)
            >>> part.val_loss[0, 0, :2], part.epochs_trained[0, 0] = [0.5, 0.4], 2
            >>> rec.absorb(part, range(1, 3))
            >>> rec.val_loss[1, 0].tolist(), rec.epochs_trained.tolist()
            ([0.5, 0.4, nan], [[0], [2]])
        """
        span = slice(epochs.start - 1, epochs.stop - 1)
        for m, i in (part.rows or {}).items():
            c, s = self.at(m)
            self.val_loss[c, s, span] = part.val_loss[i, 0, span]
            if self.metric is not None and part.metric is not None:
                self.metric[c, s, span] = part.metric[i, 0, span]
            self.epochs_trained[c, s] = max(self.epochs_trained[c, s], part.epochs_trained[i, 0])
            self.diverged[c, s] |= part.diverged[i, 0]


def rungs(epochs: int, budget: str) -> list[int]:
    """The epochs after which the survivors are chosen (the last is `epochs`): halving's rungs, or the whole budget.

    Example:
        >>> rungs(9, "halving"), rungs(9, "full")
        ([1, 3, 9], [9])
    """
    return halving_rungs(epochs, ETA) if budget == "halving" else [epochs]


def make_runners(setup: Setup, batchable: bool, ids: Sequence[int], size: int) -> list[Runner]:
    """The members `ids` in runners of at most `size` (batched populations, or plain runs when the model cannot batch).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import torch.nn.functional as F
        >>> from lrkit.optim import Optim
        >>> from lrkit.schedules import constant
        >>> x, y = torch.randn(4, 3), torch.randint(0, 2, (4,))
        >>> setup = Setup.of(lambda: nn.Linear(3, 2), F.cross_entropy, [constant(0.1)] * 3, [0, 1, 2], Optim("sgd"),
        ...                  steps=1, probe=(x, y), example=nn.Linear(3, 2), device=torch.device("cpu"))
        >>> [r.ids for r in make_runners(setup, True, [0, 1, 2], size=2)]
        [[0, 1], [2]]
    """
    ids = list(ids)
    kind = Batched if batchable else Sequential
    return [kind(setup, ids[i : i + size]) for i in range(0, len(ids), size)]


def train_rung(
    runners: Sequence[Runner], train: Iterable[Batch], val: Iterable[Batch], same: SameBatches, rec: Records, epochs: range,
    advance: Callable[[int], None], device: torch.device,
) -> None:  # fmt: skip
    """Train each runner through `epochs` (1-based), recording every epoch; `advance(n)` counts member-epochs.

    With several runners, each waits in host memory while the others train (its members come back to `device`).
    """
    for runner in runners:
        if len(runners) > 1:
            runner.keep(range(len(runner.ids)), device)  # a parked chunk comes back to the device
        for epoch in epochs:
            for m in runner.train_epoch(train, same.at(epoch)):
                rec.diverged[rec.at(m)] = True
            record(runner, val, rec, epoch)
            advance(len(runner.ids))
        if len(runners) > 1:
            runner.keep(range(len(runner.ids)), "cpu")  # parked in host memory while the other chunks train


def record(runner: Runner, val: Iterable[Batch], rec: Records, epoch: int) -> None:
    """The runner's members evaluated on `val` after `epoch`, written into `rec`."""
    if not runner.ids:
        return
    loss, metric = runner.evaluate(val)
    for k, m in enumerate(runner.ids):
        where = rec.at(m)
        rec.val_loss[where][epoch - 1] = loss[k]
        if rec.metric is not None and metric is not None:
            rec.metric[where][epoch - 1] = metric[k]
        rec.epochs_trained[where] = epoch


def survivors(rec: Records, rung: int, by_metric: bool) -> set[int]:
    """The candidates that go on after `rung`: the best third (at least one) of those still training, by their mean at the rung.

    Example:
        >>> rec = Records.empty(3, 1, 3, metric=False)
        >>> rec.val_loss[:, 0, 0], rec.epochs_trained[:] = [0.3, 0.1, 0.2], 1
        >>> survivors(rec, 1, by_metric=False)
        {1}
    """
    values = rec.metric if by_metric and rec.metric is not None else rec.val_loss
    scores = candidate_scores(values[:, :, :rung], np.minimum(rec.epochs_trained, rung), rec.diverged, -np.inf if by_metric else np.inf)
    alive = np.asarray((rec.epochs_trained >= rung).all(axis=1) & ~rec.diverged.any(axis=1))
    keys = -scores if by_metric else scores  # the lowest key is the best
    order = [int(k) for k in np.argsort(keys, kind="stable") if alive[k] and math.isfinite(keys[k])]
    return set(order[: max(1, math.ceil(len(order) / ETA))])


def kept_rows(runner: Runner, keep: set[int], n_seeds: int) -> list[int]:
    """The rows of `runner` whose members' candidates are in `keep`.

    Example:
        >>> class R: ids = [0, 1, 4, 5]
        >>> kept_rows(R(), {2}, n_seeds=2)
        [2, 3]
    """
    return [k for k, m in enumerate(runner.ids) if m // n_seeds in keep]
