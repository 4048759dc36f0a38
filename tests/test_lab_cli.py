"""`lrkit study` through click's runner: outputs, resume, progress, user mistakes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from lrkit.optim import split_specs as split_values

RunCli = Callable[..., Result]


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the store through its own connection, committed and closed before returning."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, params).fetchall()


def test_study_command_writes_everything_and_resumes(run_cli: RunCli, tmp_path: Path) -> None:
    args = ["study", "lr", "--values", "0.1,1e-6", "--seeds", "2", "--epochs", "3", "--out", tmp_path]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert "final figures" in first.output and "lr-report.html" in first.output
    assert {"lr.sqlite", "lr-report.html", "lr-curves.png", "lr-sensitivity.png", "lr-final.csv"} <= {p.name for p in tmp_path.iterdir()}
    again = run_cli(*args)  # resume: nothing missing, nothing duplicated
    assert again.exit_code == 0, again.output
    assert query(tmp_path / "lr.sqlite", "SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records") == [(12, 12)]


def test_fresh_starts_over_while_resume_keeps_the_store(run_cli: RunCli, tmp_path: Path) -> None:
    args = ["study", "lr", "--values", "0.1,1e-6", "--seeds", "2", "--epochs", "3", "--out", tmp_path]
    store, cell = tmp_path / "lr.sqlite", "WHERE member = 1 AND epoch = 3"
    assert run_cli(*args).exit_code == 0
    [(trained,)] = query(store, f"SELECT test_loss FROM records {cell}")
    assert 0 < trained < 10
    # a stored number a real run cannot give: only a run that starts over brings the trained one back
    query(store, f"UPDATE records SET test_loss = 1234.5 {cell}")
    member_3 = query(store, "SELECT epoch, test_loss FROM records WHERE member = 3 ORDER BY epoch")
    query(store, "DELETE FROM records WHERE member = 3 AND epoch = 3")
    resumed = run_cli(*args)
    assert resumed.exit_code == 0, resumed.output
    assert query(store, f"SELECT test_loss FROM records {cell}") == [(1234.5,)]  # a resume trains no stored member again
    # ... but a member missing a record is not stored whole: it is trained again, to the same numbers
    assert query(store, "SELECT epoch, test_loss FROM records WHERE member = 3 ORDER BY epoch") == member_3
    assert query(store, "SELECT COUNT(*) FROM records") == [(12,)]
    fresh = run_cli(*args, "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert query(store, f"SELECT test_loss FROM records {cell}") == [(trained,)]
    assert query(store, "SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records") == [(12, 12)]


def test_user_mistakes_exit_2_with_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    bad_value = run_cli("study", "lr", "--values", "fast", "--out", tmp_path)
    assert bad_value.exit_code == 2 and "must be float numbers" in bad_value.output
    bad_name = run_cli("study", "lrs")
    assert bad_name.exit_code == 2
    bad_problem = run_cli("study", "lr", "--problem", "nope", "--out", tmp_path)
    assert bad_problem.exit_code == 2 and "blobs, moons" in bad_problem.output
    bad_optimizer = run_cli("study", "optimizer", "--values", "sgd,lion", "--out", tmp_path)
    assert bad_optimizer.exit_code == 2 and "optimizer names (sgd, nesterov" in bad_optimizer.output
    assert run_cli("study", "--help").exit_code == 0


def test_values_split_keeps_specs_whole() -> None:
    assert split_values("cosine(start=0.01, steps=100), wsd(peak=0.01, total_steps=100, warmup_steps=5, decay_steps=20)") == [
        "cosine(start=0.01, steps=100)",
        "wsd(peak=0.01, total_steps=100, warmup_steps=5, decay_steps=20)",
    ]
