"""An embedded SQLite store of a study: its spec, its members, one row per member and epoch.

A population's members and records are written in one transaction when the
population finishes, so after a crash or Ctrl-C the store holds whole members
only; re-running the study trains just the members that are missing.

Example:
    >>> import numpy as np
    >>> s = Store(":memory:", {"name": "lr", "epochs": 2})
    >>> s.finished()
    set()
    >>> s.add([MemberRow(0, "0.1", 0, 0, 1.1, 0)], {k: np.ones((1, 2)) for k in METRICS}, np.array([16, 32]))
    >>> s.finished(), len(s.records()["epoch"])
    ({0}, 2)
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "momentum")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS spec (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    member INTEGER PRIMARY KEY, value TEXT NOT NULL, value_index INTEGER NOT NULL, seed INTEGER NOT NULL,
    initial_test_loss REAL, diverged_epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    member INTEGER NOT NULL REFERENCES members(member), epoch INTEGER NOT NULL, updates INTEGER NOT NULL,
    {", ".join(f"{m} REAL" for m in METRICS)}, PRIMARY KEY (member, epoch));
"""


@dataclasses.dataclass(frozen=True)
class MemberRow:
    """One finished member: its index in the study, value label and index, seed, and summary."""

    member: int
    value: str
    value_index: int
    seed: int
    initial_test_loss: float
    diverged_epoch: int


class Store:
    """A study's SQLite file; opening an existing file with a different spec raises (use `fresh=True`).

    Example:
        >>> Store(":memory:", {"name": "lr"}).spec
        {'name': 'lr'}
    """

    def __init__(self, path: str | Path, spec: dict[str, Any], *, fresh: bool = False) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if fresh:
                Path(path).unlink(missing_ok=True)
        self.path = str(path)
        self.db = sqlite3.connect(self.path)
        with self.db:
            self.db.executescript(_SCHEMA)
        saved = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM spec")}
        wanted = json.loads(json.dumps(spec))  # compare as stored: tuples become lists
        if saved and saved != wanted:
            self.db.close()
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            validate.fail(
                "study", "out", f"holds this study with another spec (differs in {changed}); pass fresh=True / --fresh", self.path, LabError
            )
        if not saved:
            with self.db:
                self.db.executemany("INSERT INTO spec VALUES (?, ?)", [(k, json.dumps(v)) for k, v in wanted.items()])
        self.spec = wanted

    def finished(self) -> set[int]:
        """The study indices of the members already stored.

        Example:
            >>> Store(":memory:", {}).finished()
            set()
        """
        return {row[0] for row in self.db.execute("SELECT member FROM members")}

    def add(self, members: Sequence[MemberRow], metrics: dict[str, npt.NDArray[np.float64]], updates: npt.NDArray[np.int64]) -> None:
        """Store finished members and their (members, epochs) metrics, all or nothing.

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(3, "0.1", 0, 3, 1.0, 0)], {k: np.zeros((1, 1)) for k in METRICS}, np.array([16]))
            >>> s.finished()
            {3}
        """
        rows = []
        for i, m in enumerate(members):
            for e in range(len(updates)):
                values = [_real(metrics[k][i, e]) for k in METRICS]
                rows.append((m.member, e + 1, int(updates[e]), *values))
        with self.db:  # one transaction: a crash leaves no half-stored member
            self.db.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)", [dataclasses.astuple(m) for m in members])
            self.db.executemany(f"INSERT INTO records VALUES ({', '.join('?' * (3 + len(METRICS)))})", rows)

    def members(self) -> list[MemberRow]:
        """All stored members, by study index.

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(0, "0.1", 0, 0, 1.0, 2)], {k: np.zeros((1, 1)) for k in METRICS}, np.array([16]))
            >>> s.members()[0].diverged_epoch
            2
        """
        return [MemberRow(*row) for row in self.db.execute("SELECT * FROM members ORDER BY member")]

    def records(self) -> dict[str, npt.NDArray[Any]]:
        """Every stored row joined with its member, as columns (one entry per member and epoch).

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(0, "0.1", 0, 0, 1.0, 0)], {k: np.full((1, 2), np.nan) for k in METRICS}, np.array([16, 32]))
            >>> r = s.records()
            >>> r["epoch"].tolist(), r["test_loss"].tolist()
            ([1, 2], [nan, nan])
        """
        cols = ["member", "value", "value_index", "seed", "epoch", "updates", *METRICS, "diverged"]
        query = f"""SELECT r.member, m.value, m.value_index, m.seed, r.epoch, r.updates, {", ".join("r." + k for k in METRICS)},
                    m.diverged_epoch > 0 AND r.epoch >= m.diverged_epoch
                    FROM records r JOIN members m USING (member) ORDER BY r.member, r.epoch"""
        rows = self.db.execute(query).fetchall()
        columns: list[Any] = list(zip(*rows)) if rows else [[] for _ in cols]
        kinds: dict[str, Any] = {"value": object, "diverged": bool, **{k: np.float64 for k in METRICS}}
        return {c: np.asarray(v, dtype=kinds.get(c, np.int64)) for c, v in zip(cols, columns)}

    def close(self) -> None:
        """Close the database file.

        Example:
            >>> Store(":memory:", {}).close()
        """
        self.db.close()


def _real(x: float) -> float | None:
    """SQLite has no NaN: a missing metric (diverged member, regression accuracy) is NULL."""
    return None if np.isnan(x) else float(x)
