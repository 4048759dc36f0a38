"""What lrkit's pieces need of each other, as typing protocols (torch-free).

A controller is a pure `init` / `update` pair over a small frozen state
(`lrkit.Plateau`, `lrkit.EarlyStopping`); `lrkit.Scheduler`, the lab's population
and the adapters accept anything of that shape, so a user's own controller works
wherever lrkit's does.

Example:
    >>> import lrkit
    >>> isinstance(lrkit.Plateau(), PlateauLike), isinstance(lrkit.EarlyStopping(), StopperLike)
    (True, True)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScaleState(Protocol):
    """A plateau-like controller's state: at least the multiplier it applies to the schedule.

    Example:
        >>> import lrkit
        >>> isinstance(lrkit.Plateau().init(), ScaleState)
        True
    """

    @property
    def scale(self) -> float: ...


@runtime_checkable
class StopState(Protocol):
    """A stopper's state: at least whether training should stop.

    Example:
        >>> import lrkit
        >>> isinstance(lrkit.EarlyStopping().init(), StopState)
        True
    """

    @property
    def stop(self) -> bool: ...


@runtime_checkable
class PlateauLike(Protocol):
    """What `Scheduler(plateau=...)` and `Member(plateau=...)` need: a pure `init` / `update` pair.

    `update(state, metric, lr)` returns the next state from one evaluation and the
    lr of the first group at that moment; the state's `scale` multiplies the schedule.

    Example:
        >>> import lrkit
        >>> p = lrkit.Plateau(patience=0)
        >>> round(p.update(p.update(p.init(), 1.0, 0.1), 1.0, 0.1).scale, 12)
        0.1
    """

    def init(self) -> ScaleState: ...

    def update(self, state: Any, metric: float, lr: float) -> ScaleState: ...


@runtime_checkable
class StopperLike(Protocol):
    """A stopping rule: a pure `init` / `update(state, metric)` pair whose state says `stop`.

    Example:
        >>> import lrkit
        >>> es = lrkit.EarlyStopping(patience=1)
        >>> es.update(es.update(es.init(), 1.0), 1.0).stop
        True
    """

    def init(self) -> StopState: ...

    def update(self, state: Any, metric: float) -> StopState: ...
