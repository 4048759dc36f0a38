"""`lrkit study` through click's runner: outputs, resume, progress, user mistakes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from lrkit.cli import cli
from lrkit.cli.study import split_values


def test_study_command_writes_everything_and_resumes(tmp_path: Path) -> None:
    args = ["study", "lr", "--values", "0.1,1e-6", "--seeds", "2", "--epochs", "3", "--out", str(tmp_path)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "final figures" in first.output and "lr-report.html" in first.output
    assert {"lr.sqlite", "lr-report.html", "lr-curves.png", "lr-sensitivity.png", "lr-final.csv"} <= {p.name for p in tmp_path.iterdir()}
    again = CliRunner().invoke(cli, args)  # resume: nothing missing, nothing duplicated
    assert again.exit_code == 0, again.output
    db = sqlite3.connect(tmp_path / "lr.sqlite")
    assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (2 * 2 * 3,)
    fresh = CliRunner().invoke(cli, [*args, "--fresh"])
    assert fresh.exit_code == 0 and db.execute("SELECT COUNT(*) FROM records").fetchone() == (12,)


def test_user_mistakes_exit_2_with_one_line(tmp_path: Path) -> None:
    bad_value = CliRunner().invoke(cli, ["study", "lr", "--values", "fast", "--out", str(tmp_path)])
    assert bad_value.exit_code == 2 and "must be float numbers" in bad_value.output
    bad_name = CliRunner().invoke(cli, ["study", "lrs"])
    assert bad_name.exit_code == 2
    bad_problem = CliRunner().invoke(cli, ["study", "lr", "--problem", "nope", "--out", str(tmp_path)])
    assert bad_problem.exit_code == 2 and "blobs, moons" in bad_problem.output
    assert CliRunner().invoke(cli, ["study", "--help"]).exit_code == 0


def test_values_split_keeps_specs_whole() -> None:
    assert split_values("cosine(start=0.01, steps=100), wsd(peak=0.01, total_steps=100, warmup_steps=5, decay_steps=20)") == [
        "cosine(start=0.01, steps=100)",
        "wsd(peak=0.01, total_steps=100, warmup_steps=5, decay_steps=20)",
    ]
