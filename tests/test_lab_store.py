"""The study store tells the truth: damaged files, missing records, two writers, schema versions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result

from lrkit.errors import LabError
from lrkit.lab.runner import study
from lrkit.lab.store import STORE_VERSION, Store

RunCli = Callable[..., Result]
ARGS = ["study", "lr", "--values", "0.1,0.01", "--seeds", "1", "--epochs", "2"]


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """One statement through its own connection, committed and closed before returning."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, params).fetchall()


def one_line_error(r: Result, *words: str) -> None:
    """Exit 2 with one line on stderr that says all of `words`, and no traceback."""
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrkit: error:"), r.stderr
    assert "Traceback" not in r.output and all(w in lines[0] for w in words), lines[0]


@pytest.fixture
def stored(run_cli: RunCli, tmp_path: Path) -> Path:
    """A finished `lr` study's store in tmp_path."""
    r = run_cli(*ARGS, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    return tmp_path / "lr.sqlite"


def _garbage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"\x8a" * 100 + data[100:])


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text(path: Path) -> None:
    path.write_text("member,epoch\n0,1\n")


def _other_schema(path: Path) -> None:
    path.unlink()
    query(path, "CREATE TABLE results (id INTEGER, score REAL)")


def _missing_column(path: Path) -> None:
    query(path, "ALTER TABLE records DROP COLUMN momentum")


def _bad_json(path: Path) -> None:
    query(path, "UPDATE spec SET value = '[0.1, 0.0' WHERE key = 'values'")


@pytest.mark.parametrize("damage", [_garbage_header, _truncated, _text, _other_schema, _missing_column, _bad_json])
def test_a_damaged_store_is_refused_untouched_and_fresh_starts_over(run_cli: RunCli, stored: Path, damage: Callable[[Path], None]) -> None:
    damage(stored)
    before = stored.read_bytes()
    one_line_error(run_cli(*ARGS, "--out", stored.parent), "damaged study store", "--fresh", "nothing was changed")
    assert stored.read_bytes() == before  # kept as it was, for the user to look at
    fresh = run_cli(*ARGS, "--out", stored.parent, "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert query(stored, "SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records") == [(4, 4)]


def test_a_member_missing_epoch_records_is_trained_again_to_the_same_numbers(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"values": [0.1, 0.01], "seeds": 2, "epochs": 4, "report": False}
    whole = study("lr", out=tmp_path, **kw)
    store = tmp_path / "lr.sqlite"
    query(store, "DELETE FROM records WHERE member = 1 AND epoch IN (2, 4)")  # partly missing: "final" would be epoch 3
    query(store, "DELETE FROM records WHERE member = 2")  # wholly missing: fewer seeds
    calls: list[tuple[int, int]] = []
    again = study("lr", out=tmp_path, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls[0] == (8, 16)  # members 0 and 3 are whole; 1 and 2 are trained again
    assert query(store, "SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records") == [(16, 16)]
    for col in ("member", "epoch", "test_loss", "train_loss", "lr"):
        np.testing.assert_array_equal(again.table[col], whole.table[col])
    assert [r["seeds"] for r in again.summary()] == [2, 2]


def test_stray_records_of_a_member_without_its_row_are_replaced(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"values": [0.1], "seeds": 2, "epochs": 3, "report": False}
    whole = study("lr", out=tmp_path, **kw)
    query(tmp_path / "lr.sqlite", "DELETE FROM members WHERE member = 1")
    again = study("lr", out=tmp_path, **kw)
    np.testing.assert_array_equal(again.table["test_loss"], whole.table["test_loss"])


def test_a_stored_member_of_another_study_is_damage(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"values": [0.1], "seeds": 1, "epochs": 1, "report": False}
    study("lr", out=tmp_path, **kw)
    query(tmp_path / "lr.sqlite", "UPDATE members SET seed = 7")
    with pytest.raises(LabError, match=r"member 0 .* is not a member of this study"):
        study("lr", out=tmp_path, **kw)


def test_one_writer_per_store_in_one_process(tmp_path: Path) -> None:
    first = Store(tmp_path / "s.sqlite", {"study": "lr"})
    with pytest.raises(LabError, match=f"in use by another lrkit process \\(pid {os.getpid()}\\)"):
        Store(tmp_path / "s.sqlite", {"study": "lr"})
    with pytest.raises(LabError, match="in use"):
        Store(tmp_path / "s.sqlite", {"study": "lr"}, fresh=True)  # --fresh never deletes a store in use
    first.close()
    Store(tmp_path / "s.sqlite", {"study": "lr"}).close()  # free again


SLOW_PROBLEM = """
import os, time
import numpy as np, torch

calls = 0

def make():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    return model, (x[:32], y[:32], x[32:], y[32:])

def model():
    global calls
    calls += 1
    if calls > 1:  # the first call is lrkit's check of the problem; the next ones train, with the store held
        open(os.environ["STARTED"], "w").close()
        deadline = time.time() + 120
        while not os.path.exists(os.environ["GO"]) and time.time() < deadline:
            time.sleep(0.05)
    return torch.nn.Linear(2, 2)
"""


def _lrkit(*args: str) -> list[str]:
    return [sys.executable, "-c", "from lrkit.cli import main; main()", *args]


def test_two_processes_on_one_store_the_second_stops_at_once(tmp_path: Path) -> None:
    (tmp_path / "slowprob.py").write_text(textwrap.dedent(SLOW_PROBLEM))
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "STARTED": str(started), "GO": str(go)}
    args = ["study", "lr", "--problem", "slowprob:make", "--values", "0.1,0.01", "--seeds", "2", "--epochs", "3", "--out", str(out)]
    first = subprocess.Popen(_lrkit(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert started.exists(), first.communicate()
        t0 = time.time()
        second = subprocess.run(_lrkit(*args), env=env, capture_output=True, text=True, timeout=120)
        waited = time.time() - t0
    finally:
        go.touch()
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another lrkit process" in lines[0] and f"pid {first.pid}" in lines[0], second.stderr
    assert "Traceback" not in second.stderr and waited < 60  # at once: no training, no waiting for the first
    store = out / "lr.sqlite"
    expected = [(12, 12)]  # 2 values x 2 seeds x 3 epochs: nothing lost, nothing duplicated
    assert query(store, "SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records") == expected
    numbers = query(store, "SELECT member, epoch, test_loss FROM records ORDER BY member, epoch")
    again = subprocess.run(_lrkit(*args), env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the first is done: the store is free, and whole
    assert query(store, "SELECT member, epoch, test_loss FROM records ORDER BY member, epoch") == numbers


def test_a_store_of_another_version_is_refused_with_a_clear_line(run_cli: RunCli, stored: Path) -> None:
    assert query(stored, "PRAGMA user_version") == [(STORE_VERSION,)]
    query(stored, f"PRAGMA user_version = {STORE_VERSION + 1}")
    before = stored.read_bytes()
    one_line_error(run_cli(*ARGS, "--out", stored.parent), f"version {STORE_VERSION + 1}", "--fresh")
    assert stored.read_bytes() == before


def test_a_file_of_another_application_is_not_a_store(run_cli: RunCli, stored: Path) -> None:
    query(stored, "PRAGMA application_id = 42")
    one_line_error(run_cli(*ARGS, "--out", stored.parent), "not an lrkit study store")


def test_an_unversioned_store_of_earlier_lrkit_is_stamped_and_resumed(run_cli: RunCli, stored: Path) -> None:
    numbers = query(stored, "SELECT member, epoch, test_loss FROM records ORDER BY member, epoch")
    query(stored, "PRAGMA user_version = 0")
    query(stored, "PRAGMA application_id = 0")
    r = run_cli(*ARGS, "--out", stored.parent)
    assert r.exit_code == 0, r.output
    assert query(stored, "PRAGMA user_version") == [(STORE_VERSION,)]
    assert query(stored, "SELECT member, epoch, test_loss FROM records ORDER BY member, epoch") == numbers
