"""`lrkit landscape`: surface, net, the page, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

from lrkit.landscape import Trajectory, descend

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def run(run_cli: Callable[..., Result]) -> Run:
    """`lrkit landscape ARGS` through the shared runner: (exit code, output)."""

    def landscape(*args: str) -> tuple[int, str]:
        result = run_cli("landscape", *args)
        return result.exit_code, result.output

    return landscape


def test_surface_writes_png_gif_and_the_trajectories(run: Run, tmp_path: Path) -> None:
    code, out = run(
        "surface",
        "--surface",
        "rosenbrock",
        "--optimizer",
        "sgd,adam",
        "--lr",
        "1e-3,1e-2",
        "--steps",
        "8",
        "--frames",
        "3",
        "--resolution",
        "40",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out
    assert (tmp_path / "rosenbrock.png").stat().st_size > 0
    assert (tmp_path / "rosenbrock.gif").read_bytes()[:6] == b"GIF89a"
    runs = [Trajectory.from_dict(d) for d in json.loads((tmp_path / "rosenbrock-trajectories.json").read_text())]
    assert [(r.optimizer, r.lrs[0]) for r in runs] == [("sgd", 1e-3), ("sgd", 1e-2), ("adam", 1e-3), ("adam", 1e-2)]
    np.testing.assert_array_equal(runs[2].points, descend("rosenbrock", "adam", lr=1e-3, steps=8).points)
    assert "adam lr=0.01" in out


def test_surface_with_a_schedule_spec_and_start(run: Run, tmp_path: Path) -> None:
    args = ["--surface", "himmelblau", "--optimizer", "momentum", "--lr", "0.01", "--schedule", "cosine(start=1.0, steps=10)"]
    code, out = run("surface", *args, "--steps", "10", "--start", "1,1", "--no-gif", "--out", str(tmp_path))
    assert code == 0, out
    (run,) = [Trajectory.from_dict(d) for d in json.loads((tmp_path / "himmelblau-trajectories.json").read_text())]
    assert run.points[0].tolist() == [1.0, 1.0] and run.lrs[5] == pytest.approx(0.005)
    assert not (tmp_path / "himmelblau.gif").exists()


def test_optimizer_takes_names_and_specs_and_momentum_is_momentum_sgd(run: Run, tmp_path: Path) -> None:
    args = ["--surface", "quadratic", "--optimizer", "momentum, sgd(momentum=0.9), nesterov(momentum=0.5), adamw", "--lr", "0.05"]
    code, out = run("surface", *args, "--steps", "6", "--no-gif", "--resolution", "20", "--out", str(tmp_path))
    assert code == 0, out
    runs = [Trajectory.from_dict(d) for d in json.loads((tmp_path / "quadratic-trajectories.json").read_text())]
    assert [r.optim.spec for r in runs] == ["sgd(momentum=0.9)", "sgd(momentum=0.9)", "nesterov(momentum=0.5)", "adamw"]
    assert [r.optimizer for r in runs] == ["momentum", "momentum", "nesterov(momentum=0.5)", "adamw"]
    np.testing.assert_array_equal(runs[0].points, runs[1].points)
    np.testing.assert_array_equal(runs[0].points, descend("quadratic", "sgd", lr=0.05, momentum=0.9, steps=6).points)


def test_optimizer_help_names_the_specs(run: Run) -> None:
    code, out = run("surface", "--help")
    assert code == 0 and "sgd(momentum=0.9)" in out and "'momentum'" in out


def test_net_writes_slices_pca_and_curvatures(run: Run, tmp_path: Path) -> None:
    args = ["--problem", "blobs", "--lr", "0.5,0.01", "--epochs", "3", "--points", "9", "--grid", "4", "--directions", "2"]
    code, out = run("net", *args, "--out", str(tmp_path))
    assert code == 0, out
    for name in ("slices-1d.png", "slice-2d-lr0.5.png", "slice-2d-lr0.01.png", "pca-path-lr0.5.png", "pca-path-lr0.01.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["lr"] for s in summary] == [0.5, 0.01] and all(len(s["curvatures"]) == 2 for s in summary)
    assert "curvature at 0" in out


@pytest.mark.parametrize("how", [["--html"], ["page", "--html"]])
def test_html_page(run: Run, tmp_path: Path, how: list[str]) -> None:
    code, out = run(*how, str(tmp_path / "out.html"), "--steps", "20") if how == ["--html"] else run(*how, str(tmp_path / "out.html"))
    assert code == 0, out
    assert '"default_surface"' in (tmp_path / "out.html").read_text(encoding="utf-8")


def test_group_without_arguments_prints_help(run: Run) -> None:
    code, out = run()
    assert code == 0 and "surface" in out and "--html" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["surface", "--surface", "sphere"], "'quadratic', 'rosenbrock', 'beale', 'himmelblau', 'saddle', 'rastrigin'"),
        (["surface", "--optimizer", "sgd,lbfgs"], "'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw'"),
        (["surface", "--optimizer", "sgd(momentum=2)"], "'momentum' must lie in [0, 1)"),
        (["surface", "--lr", "0"], "'--lr' must be > 0"),
        (["surface", "--lr", "inf"], "'--lr' must be finite"),
        (["surface", "--lr", "fast"], "comma-separated float"),
        (["surface", "--start", "1,2,3"], "2 coordinates"),
        (["surface", "--schedule", "zigzag(1)"], "registered schedule"),
        (["net", "--problem", "imagenet"], "blobs"),
        (["net", "--lr", "-1"], "'--lr' must be > 0"),
        (["net", "--grid", "3000"], "too large for memory"),
        (["surface", "--resolution", "3000"], "too large for memory"),
        (["--html", "out.txt"], ".html"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_code_2(run: Run, args: list[str], fragment: str, tmp_path: Path) -> None:
    code, out = run(*args, *(["--out", str(tmp_path)] if args[0] in ("surface", "net") else []))
    assert code == 2, out
    assert fragment in out and "Traceback" not in out
