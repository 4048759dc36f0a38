"""Issue 12, part 4, for `lrkit landscape` and `lrkit bench`: every mistake is exit 2 and one line, checked before work starts.

The library functions behind the commands raise `LandscapeError` (or `LabError` for the benchmark's config) for the same inputs.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import Result

import lrkit.bench.finder as bench_finder
import lrkit.landscape.studies as studies
from lrkit.errors import LabError, LandscapeError
from lrkit.lab.problems import get_problem
from lrkit.landscape import descend
from lrkit.landscape.figures import plot_slice_2d, plot_slices, save_gif
from lrkit.landscape.nets import Slice2D, pca_path, slice_1d, slice_2d, train_with_checkpoints
from lrkit.landscape.trajectory import MAX_STEPS

RunCli = Callable[..., Result]
FAST_SURFACE = ["--steps", "2", "--no-gif", "--resolution", "5"]
FAST_NET = ["--epochs", "2", "--points", "5", "--grid", "3", "--directions", "1"]


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(("Error:", "lrkit: error:"))]


def assert_one_line_exit_2(result: Result, fragment: str) -> None:
    """Exit 2, no traceback, exactly one error line, and it says `fragment`."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.output


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call that reaches the long work (trajectories, training, the benchmark) fails the test with exit 1."""

    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the work started before the arguments were checked")

    for module, name in ((studies, "surface_runs"), (studies, "net_landscape"), (bench_finder, "run")):
        monkeypatch.setattr(module, name, started)


def _blocked(tmp_path: Path) -> dict[str, str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {"proc": "/proc/lrkit-x", "file": str(a_file), "under-file": str(a_file / "under")}


@pytest.mark.parametrize("where", ["proc", "file", "under-file"])
@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["landscape", "surface", *FAST_SURFACE], "--out"),
        (["landscape", "net", *FAST_NET], "--out"),
        (["bench", "finder", "--quick"], "--out"),
        (["landscape"], "--html"),
        (["landscape", "page"], "--html"),
    ],
)
def test_an_unwritable_output_is_refused_before_work(
    run_cli: RunCli, no_work: None, tmp_path: Path, command: list[str], option: str, where: str
) -> None:
    target = _blocked(tmp_path)[where]
    if option == "--html":  # a page file: in a folder that cannot be made, under a file, or an existing folder
        target = str(tmp_path) if where == "file" else f"{target}/page.html"
    result = run_cli(*command, option, target)
    assert_one_line_exit_2(result, "cannot write")


BAD_CALLS_BEFORE_WORK = [
    # the group without a subcommand, and its --steps with a subcommand (silently ignored before)
    (["landscape", "--steps", "10"], "a subcommand is needed"),
    (["landscape", "--steps", "10", "surface"], "applies only with --html"),
    (["landscape", "--steps", "0", "--html", "x.html"], "--steps"),
    # surface: huge counts, GIF settings, the pictures' grid
    (["landscape", "surface", "--steps", "100000000000", "--no-gif"], "'--steps' must be at most 100000"),
    (["landscape", "surface", "--frames", "100000000"], "'frames' must be an integer in [2, 1000]"),
    (["landscape", "surface", "--frames", "1"], "--frames"),
    (["landscape", "surface", "--resolution", "1"], "--resolution"),
    (["landscape", "surface", "--resolution", "3000"], "too large for memory"),
    (["landscape", "surface", "--lr", ","], "at least one comma-separated value"),
    (["landscape", "surface", "--start", ","], "at least one comma-separated value"),
    (["landscape", "surface", "--optimizer", ","], "at least one optimizer"),
    (["landscape", "surface", "--surface", ""], "'quadratic', 'rosenbrock'"),
    # net: every setting is checked before the first training
    (["landscape", "net", "--epochs", "1"], "--epochs"),
    (["landscape", "net", "--distance", "0"], "'distance' must be > 0"),
    (["landscape", "net", "--distance", "nan"], "'distance' must be finite"),
    (["landscape", "net", "--distance", "inf"], "'distance' must be finite"),
    (["landscape", "net", "--distance", "1e308"], "'distance' must be at most 1000"),
    (["landscape", "net", "--distance", "-1"], "'distance' must be > 0"),
    (["landscape", "net", "--directions", "100000"], "'directions' must be an integer in [1, 1000]"),
    (["landscape", "net", "--directions", "0"], "--directions"),
    (["landscape", "net", "--seed", "-1"], "'seed' must be an integer in [0,"),
    (["landscape", "net", "--seed", "9223372036854775807"], "'seed' must be an integer in [0, 9223372036854775803]"),  # seed + 4
    (["landscape", "net", "--points", "100000000"], "too large for memory"),
    (["landscape", "net", "--lr", ","], "at least one comma-separated value"),
    (["landscape", "net", "--lr", "nan"], "'--lr' must be finite"),
    (["landscape", "net", "--problem", ""], "built-in problem"),
    (["landscape", "net", "--problem", "os:system"], "not of the standard library"),
    (["landscape", "net", "--problem", "builtins:exit"], "not of the standard library"),
    (["landscape", "net", "--problem", "nosuchmodule_lrkit:make"], "importable"),
    # bench finder: empty or repeated lists, huge sizes, seeds without room for the finder's offset
    (["bench", "finder", "--problems", ","], "'problems' must name at least one of"),
    (["bench", "finder", "--optimizers", ","], "'optimizers' must name at least one of"),
    (["bench", "finder", "--seeds", ","], "'seeds' must hold at least one seed"),
    (["bench", "finder", "--problems", "blobs,blobs"], "must name each one once"),
    (["bench", "finder", "--seeds", "1,1"], "each once"),
    (["bench", "finder", "--seeds", "x"], "comma-separated integers"),
    (["bench", "finder", "--seeds", "9223372036854775807"], "'seeds' must be an integer in [0, 9223372036854774807]"),
    (["bench", "finder", "--grid-points", "100000000"], "'grid_points' must be an integer in [2, 200]"),
    (["bench", "finder", "--grid-points", "0"], "'grid_points'"),
    (["bench", "finder", "--workers", "100000"], "'workers' must be an integer in [1,"),
    (["bench", "finder", "--workers", "-1"], "'workers'"),
    (["bench", "finder", "--problems", "nosuch"], "'problems' must be one of"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_CALLS_BEFORE_WORK, ids=[" ".join(a) for a, _ in BAD_CALLS_BEFORE_WORK])
def test_bad_calls_exit_2_with_one_line_before_work(run_cli: RunCli, no_work: None, tmp_path: Path, args: list[str], fragment: str) -> None:
    needs_out = args[:2] in (["landscape", "surface"], ["landscape", "net"], ["bench", "finder"])
    html = ["--html", str(tmp_path / "p.html")] if "--html" in args else []
    args = [a if a != "x.html" else str(tmp_path / "x.html") for a in args if not html or a != "--html"]
    result = run_cli(*args, *(["--out", str(tmp_path)] if needs_out else []))
    assert_one_line_exit_2(result, fragment)


def test_the_bare_group_still_prints_its_help(run_cli: RunCli) -> None:
    result = run_cli("landscape")
    assert result.exit_code == 0 and "surface" in result.output


# -- bad calls found only once the work runs: reported in one line, no traceback -------------------
def test_an_overflowing_start_is_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("landscape", "surface", "--start", "1e308,1e308", *FAST_SURFACE, "--out", tmp_path)
    assert_one_line_exit_2(result, "loss and its gradient are finite (rosenbrock gives loss inf there)")


def test_a_diverging_lr_on_a_net_is_one_line_naming_the_lr(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("landscape", "net", "--lr", "1e3", *FAST_NET, "--out", tmp_path)
    assert_one_line_exit_2(result, "'lr' must keep the training finite (the weights of 'blobs' are not finite after epoch 1")


def test_a_run_that_diverges_at_once_is_reported_with_its_lr(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("landscape", "surface", "--optimizer", "sgd", "--lr", "1e308", *FAST_SURFACE, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "sgd lr=1e+308 (diverged)" in result.output and "diverged after 0 steps" in result.output


# -- the library behind the commands ---------------------------------------------------------------
def test_descend_rejects_a_start_with_a_non_finite_loss_or_gradient() -> None:
    with pytest.raises(LandscapeError, match="descend: parameter 'start' must be a point where the loss and its gradient are finite"):
        descend("quadratic", "sgd", lr=0.1, steps=2, start=[1e200, 1e200], limit=1e300)
    with pytest.raises(LandscapeError, match="must lie within limit=1e\\+06"):
        descend("quadratic", "sgd", lr=0.1, steps=2, start=[2e6, 0.0])


def test_descend_caps_the_steps_before_allocating() -> None:
    with pytest.raises(LandscapeError, match=f"'steps' must be at most {MAX_STEPS}"):
        descend("quadratic", "sgd", lr=0.1, steps=10**11)


def test_training_that_diverges_raises_naming_the_lr() -> None:
    with pytest.raises(LandscapeError, match="train_with_checkpoints: parameter 'lr' must keep the training finite"):
        train_with_checkpoints(get_problem("blobs"), 1e3, epochs=2)


def test_pca_path_rejects_non_finite_checkpoints() -> None:
    path = [[torch.tensor([float(t), 2.0 * t])] for t in range(3)] + [[torch.tensor([math.nan, 1.0])]]
    with pytest.raises(LandscapeError, match="pca_path: parameter 'checkpoints' must hold finite weights"):
        pca_path(path)


@pytest.mark.parametrize("distance", [0.0, -1.0, 1e308, math.nan, math.inf])
@pytest.mark.parametrize("slicer", [slice_1d, slice_2d])
def test_slices_reject_a_distance_out_of_range(slicer: Callable[..., Any], distance: float) -> None:
    model = torch.nn.Linear(2, 1)
    with pytest.raises(LandscapeError, match=f"{slicer.__name__}: parameter 'distance'"):
        slicer(model, torch.nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)), distance=distance, steps=3)


def test_a_slice_that_reaches_non_finite_losses_raises() -> None:
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1e30)  # a step of one weight norm gives outputs ~1e30: their square overflows float32
    data = (torch.ones(4, 2), torch.zeros(4, 1))
    with pytest.raises(LandscapeError, match="slice_1d: parameter 'distance' must keep the loss finite on the slice"):
        slice_1d(model, torch.nn.functional.mse_loss, data, steps=5, distance=1.0)


def test_net_landscape_checks_everything_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "train_with_checkpoints", lambda *a, **k: pytest.fail("trained before checking"))
    blobs = get_problem("blobs")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"epochs": 1}, "'epochs' must be an integer >= 2"),
        ({"distance": 5e3}, "'distance' must be at most 1000"),
        ({"directions": 10**6}, "'directions' must be an integer in [1, 1000]"),
        ({"seed": 2**63 - 1}, "'seed' must be an integer"),
        ({"points": 1}, "'points'"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(LandscapeError, match=re.escape(fragment)):
            studies.net_landscape(blobs, 0.1, **kwargs)
    with pytest.raises(TypeError, match=re.escape("'problem' must be an lrkit.lab Problem")):
        studies.net_landscape("blobs", 0.1)  # type: ignore[arg-type]


def test_figures_reject_bad_inputs(tmp_path: Path) -> None:
    runs = [descend("quadratic", "sgd", lr=0.1, steps=3)]
    with pytest.raises(LandscapeError, match="'frames' must be an integer in \\[2, 1000\\]"):
        save_gif("quadratic", runs, tmp_path / "q.gif", frames=10**8)
    with pytest.raises(LandscapeError, match="'fps'"):
        save_gif("quadratic", runs, tmp_path / "q.gif", fps=0)
    g = np.linspace(-1, 1, 3)
    with pytest.raises(LandscapeError, match="'plane' must hold finite losses"):
        plot_slice_2d(Slice2D(g, g, np.full((3, 3), np.inf)))
    with pytest.raises(TypeError, match="'plane' must be a Slice2D"):
        plot_slice_2d("plane")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'slices' must be a list of Slice1D"):
        plot_slices(["s"], ["a"])  # type: ignore[list-item]


def test_the_benchmark_config_rejects_empty_repeated_and_missing_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    for config, fragment in [
        (bench_finder.Config(problems=()), "'problems' must name at least one of"),
        (bench_finder.Config(optimizers=()), "'optimizers' must name at least one of"),
        (bench_finder.Config(optimizers=("sgd", "sgd")), "must name each one once"),
        (bench_finder.Config(seeds=(0, 0)), "each once"),
        (bench_finder.Config(epochs_scale=0.0), "'epochs_scale' must be > 0"),
    ]:
        with pytest.raises(LabError, match=fragment):
            config.check()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LabError, match="needs torch-lr-finder installed"):
        bench_finder.Config().check()
    bench_finder.Config(compare_tlf=False).check()
