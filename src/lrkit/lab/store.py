"""An embedded SQLite store of a study: its spec, its members, one row per member and epoch.

A population's members and records are written in one transaction when the
population finishes, so after a crash or Ctrl-C the store holds whole members
only; re-running the study trains just the members that are missing. A member
counts as finished only when every one of its epoch records is there (`finished`);
any other is trained again, and `add` replaces what was left of it.

The store tells the truth or refuses, never a wrong result:

- one writer: a `Store` holds an OS lock (`NAME.sqlite.lock`, `flock`) from opening to
  `close`; a second one on the same file raises "in use" at once, before any work;
- a damaged file (not a database, truncated, another schema, a spec that is not JSON)
  raises a `LabError` saying so and changes nothing; `fresh=True` deletes it and starts over;
- the file records its schema version (`PRAGMA user_version`, `STORE_VERSION`); a store of
  another version is refused with a clear line (the unversioned stores of earlier lrkit
  releases have this very schema and are stamped in place).

Example:
    >>> import numpy as np
    >>> s = Store(":memory:", {"name": "lr", "epochs": 2})
    >>> s.finished(2)
    set()
    >>> s.add([MemberRow(0, "0.1", 0, 0, 1.1, 0)], {k: np.ones((1, 2)) for k in METRICS}, np.array([16, 32]))
    >>> s.finished(2), len(s.records()["epoch"])
    ({0}, 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "momentum")
STORE_VERSION = 1  # PRAGMA user_version of the files this lrkit writes and reads
APPLICATION_ID = 0x6C726B74  # PRAGMA application_id: "lrkt", marks a file as an lrkit study store
_SCHEMA = f"""
CREATE TABLE spec (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE members (
    member INTEGER PRIMARY KEY, value TEXT NOT NULL, value_index INTEGER NOT NULL, seed INTEGER NOT NULL,
    initial_test_loss REAL, diverged_epoch INTEGER NOT NULL);
CREATE TABLE records (
    member INTEGER NOT NULL REFERENCES members(member), epoch INTEGER NOT NULL, updates INTEGER NOT NULL,
    {", ".join(f"{m} REAL" for m in METRICS)}, PRIMARY KEY (member, epoch));
"""
_FRESH = "pass fresh=True / --fresh to delete it and start over"


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
    """A study's SQLite file, held by one writer; opening an existing file with a different spec raises (use `fresh=True`).

    Example:
        >>> Store(":memory:", {"name": "lr"}).spec
        {'name': 'lr'}
    """

    def __init__(self, path: str | Path, spec: dict[str, Any], *, fresh: bool = False) -> None:
        self.path = str(path)
        self._lock: int | None = None
        self.db: sqlite3.Connection | None = None
        if self.path != ":memory:":
            self._lock = _locked(Path(path))  # before `fresh` deletes anything: never the file another writer is using
        try:
            if fresh and self._lock is not None:
                _delete(Path(path))
            self.db = sqlite3.connect(self.path, timeout=1.0)
            with _sqlite(self.path):
                stamp = _check_schema(self.db, self.path)
                self.spec = self._agree(spec)
                if stamp:  # only once the file proved sound: a refused file is left byte for byte as it was
                    self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self.db.execute(f"PRAGMA user_version = {STORE_VERSION}")
        except BaseException:
            self.close()
            raise

    def _agree(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The stored spec, which must be `spec` (a new store stores it)."""
        saved = _saved_spec(self._db, self.path)
        wanted: dict[str, Any] = json.loads(json.dumps(spec))  # compare as stored: tuples become lists
        if saved and saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            validate.fail("study", "out", f"holds this study with another spec (differs in {changed}); {_FRESH}", self.path, LabError)
        if not saved:
            with self._db:
                self._db.executemany("INSERT INTO spec VALUES (?, ?)", [(k, json.dumps(v)) for k, v in wanted.items()])
        return wanted

    @property
    def _db(self) -> sqlite3.Connection:
        if self.db is None:
            validate.fail("Store", "db", "is closed", self.path, LabError)
        return self.db

    def finished(self, epochs: int) -> set[int]:
        """The study indices of the members stored whole: a member row and its records for epochs 1..`epochs`, no more, no fewer.

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(0, "0.1", 0, 0, 1.0, 0)], {k: np.zeros((1, 2)) for k in METRICS}, np.array([16, 32]))
            >>> s.finished(2), s.finished(3)
            ({0}, set())
        """
        query = """SELECT member FROM members JOIN records USING (member) GROUP BY member
                   HAVING COUNT(*) = ? AND MIN(epoch) = 1 AND MAX(epoch) = ?"""
        with _sqlite(self.path):
            return {row[0] for row in self._db.execute(query, (epochs, epochs))}

    def add(self, members: Sequence[MemberRow], metrics: dict[str, npt.NDArray[np.float64]], updates: npt.NDArray[np.int64]) -> None:
        """Store finished members and their (members, epochs) metrics, all or nothing, replacing what was left of them.

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(3, "0.1", 0, 3, 1.0, 0)], {k: np.zeros((1, 1)) for k in METRICS}, np.array([16]))
            >>> s.finished(1)
            {3}
        """
        rows = []
        for i, m in enumerate(members):
            for e in range(len(updates)):
                values = [_real(metrics[k][i, e]) for k in METRICS]
                rows.append((m.member, e + 1, int(updates[e]), *values))
        ids = [(m.member,) for m in members]
        with _sqlite(self.path), self._db:  # one transaction: a crash leaves no half-stored member
            self._db.executemany("DELETE FROM records WHERE member = ?", ids)
            self._db.executemany("DELETE FROM members WHERE member = ?", ids)
            self._db.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)", [dataclasses.astuple(m) for m in members])
            self._db.executemany(f"INSERT INTO records VALUES ({', '.join('?' * (3 + len(METRICS)))})", rows)

    def members(self) -> list[MemberRow]:
        """All stored members, by study index.

        Example:
            >>> s = Store(":memory:", {})
            >>> s.add([MemberRow(0, "0.1", 0, 0, 1.0, 2)], {k: np.zeros((1, 1)) for k in METRICS}, np.array([16]))
            >>> s.members()[0].diverged_epoch
            2
        """
        with _sqlite(self.path):
            return [MemberRow(*row) for row in self._db.execute("SELECT * FROM members ORDER BY member")]

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
        with _sqlite(self.path):
            rows = self._db.execute(query).fetchall()
        columns: list[Any] = list(zip(*rows)) if rows else [[] for _ in cols]
        kinds: dict[str, Any] = {"value": object, "diverged": bool, **{k: np.float64 for k in METRICS}}
        return {c: np.asarray(v, dtype=kinds.get(c, np.int64)) for c, v in zip(cols, columns)}

    def close(self) -> None:
        """Close the database file and let another writer in (closing twice is harmless).

        Example:
            >>> Store(":memory:", {}).close()
        """
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the OS lock
            self._lock = None


def damaged(path: str, why: str) -> NoReturn:
    """Raise the one `LabError` for a store that cannot be trusted: what is wrong, that nothing changed, and what to do.

    Example:
        >>> try:
        ...     damaged("lr.sqlite", "file is not a database")
        ... except LabError as e:
        ...     print(str(e)[:72])
        study: parameter 'out' holds a damaged study store (file is not a databa
    """
    validate.fail("study", "out", f"holds a damaged study store ({why}); nothing was changed: move it away, or {_FRESH}", path, LabError)


@contextlib.contextmanager
def _sqlite(path: str) -> Iterator[None]:
    """SQLite's own errors on the store, as one LabError: the file is damaged, or (locked) in use by a program outside lrkit."""
    try:
        yield
    except sqlite3.Error as e:
        why = " ".join(str(e).split()) or type(e).__name__
    else:
        return
    if "locked" in why:
        validate.fail("study", "out", f"is a study store in use by another program (sqlite: {why}); one writer per store", path, LabError)
    damaged(path, f"sqlite: {why}")


def _check_schema(db: sqlite3.Connection, path: str) -> bool:
    """Create the tables in a new file; else the file must be an intact lrkit store of `STORE_VERSION` (or an unversioned one).

    True when the file is to be stamped with the version (a new or unversioned store).
    """
    if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
        damaged(path, "sqlite's integrity check failed")
    app, version = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version"))
    tables = _tables(db)
    if not tables and app == 0 and version == 0:  # a new (or empty) file
        with db:
            db.executescript(_SCHEMA)
    elif app not in (0, APPLICATION_ID):
        damaged(path, f"it is not an lrkit study store (application id {app:#x})")
    elif version != STORE_VERSION and (version != 0 or app != 0):
        validate.fail(
            "study", "out", f"holds a study store of version {version}, which this lrkit (store version {STORE_VERSION}) does not read: "
            f"open it with the lrkit that wrote it, or {_FRESH}", path, LabError,
        )  # fmt: skip
    elif tables != _expected_tables():
        damaged(path, f"it has tables {sorted(tables)} unlike an lrkit study store's, or other columns")
    return bool(version != STORE_VERSION)


def _tables(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's columns as (name, type, not null, default, primary key position)."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {n: [tuple(col[1:]) for col in db.execute(f"PRAGMA table_info({n!r})")] for n in names}


def _expected_tables() -> dict[str, list[tuple[Any, ...]]]:
    """The tables of `_SCHEMA`, read from a scratch database (so the schema is written once)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as scratch:
        scratch.executescript(_SCHEMA)
        return _tables(scratch)


def _saved_spec(db: sqlite3.Connection, path: str) -> dict[str, Any]:
    saved: dict[str, Any] = {}
    for key, text in db.execute("SELECT key, value FROM spec"):
        try:
            saved[key] = json.loads(text)
        except (TypeError, ValueError):
            damaged(path, f"its spec entry {key!r} is not JSON")
    return saved


def _locked(path: Path) -> int:
    """An open descriptor of `path`'s lock file, holding its exclusive OS lock; "in use" when another process holds it."""
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        why = e.strerror or str(e)
        validate.fail("study", "out", f"must be a folder lrkit can write the study store in ({why})", str(path.parent), LabError)
    if not _try_lock(fd):
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        validate.fail(
            "study", "out", f"holds a study store in use by another lrkit process (pid {holder or '?'}): one writer per store; "
            "wait for it to finish, or use another out folder", str(path), LabError,
        )  # fmt: skip
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _delete(path: Path) -> None:
    """The store and SQLite's side files (a stale journal must not be replayed into the new store)."""
    try:
        for suffix in ("", "-journal", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    except OSError as e:
        why = e.strerror or str(e)
    else:
        return
    validate.fail("study", "fresh", f"must be able to delete the old store ({why})", str(path), LabError)


def _real(x: float) -> float | None:
    """SQLite has no NaN: a missing metric (diverged member, regression accuracy) is NULL."""
    return None if np.isnan(x) else float(x)
