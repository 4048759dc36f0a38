"""The study commands' progress bar and their summary numbers (shared by `lrkit study` and `lrkit study lr-free`)."""

from __future__ import annotations

import math
from typing import Any


class study_progress:
    """A rich progress bar over member-epochs (or another `unit`), as a context manager yielding the `progress` callback.

    Example:
        >>> bar = study_progress("lr", unit="runs")  # drawn from the first call of the callback on
        >>> bar.task
        0
    """

    def __init__(self, name: str, unit: str = "member-epochs") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"study {name}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                            TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
        self.task = self.bar.add_task(name, total=None)

    def __enter__(self) -> Any:
        def advance(done: int, total: int) -> None:
            # drawn from the first report on, so a bad argument fails before any bar appears
            self.bar.start()
            self.bar.update(self.task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar.live.is_started:  # a command that failed before its first report leaves no empty line
            self.bar.stop()


def plus_minus(mean: float, std: float) -> str:
    """`mean ± std` to three decimals, a dash for NaN.

    Example:
        >>> plus_minus(0.5, 0.01), plus_minus(float("nan"), 0.0)
        ('0.500 ± 0.010', '–')
    """
    return "–" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"
