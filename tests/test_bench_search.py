"""The search benchmark (`lrkit bench search`): the quick run end to end, the grid's batched training against the plain
runs, the summary's arithmetic on synthetic records, and the config's checks."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from lrkit.bench import finder
from lrkit.bench.finder import fit
from lrkit.bench.search import Config, grid_losses, held_out
from lrkit.bench.search_report import (
    HALVING,
    LIGHTNING,
    METHODS,
    RANGE_TEST,
    SEARCH,
    SHAPES,
    grid_best,
    mean_loss,
    regrets,
    summarize,
    table,
)
from lrkit.errors import LabError
from lrkit.lab.problems import Problem, get_problem
from lrkit.schedules import Constant, parse


# -- end to end ---------------------------------------------------------------------------------------------------
def test_quick_run_writes_every_method_and_the_targets(run_cli: Callable[..., Any], tmp_path: Any) -> None:
    result = run_cli("bench", "search", "--quick", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench_search.json").read_text())
    (cell,) = report["cells"]
    assert (cell["problem"], cell["optimizer"], cell["seeds"]) == ("blobs", "sgd(momentum=0.9)", [100])
    assert [lr for lr, _ in cell["grid"]] == pytest.approx(Config.quick().grid("sgd(momentum=0.9)"))
    assert set(cell["methods"]) == set(METHODS)
    for method in (SEARCH, HALVING, SHAPES):
        entry = cell["methods"][method]
        assert entry["wall"] >= entry["result_wall"] > 0 and entry["member_steps"] > 0
        assert math.isfinite(regrets(cell)[method])  # blobs trains: every search's choice has a finite held-out loss
        # the recorded held-out loss is the recommended schedule replayed with lrkit.Scheduler on the held-out seed
        replayed = held_out(get_problem("blobs"), "sgd(momentum=0.9)", parse(entry["spec"]), [100], cell["epochs"])
        assert replayed == pytest.approx(entry["losses"], rel=1e-6)
    # halving drops candidates at its rungs: fewer member-steps than the full search
    assert cell["methods"][HALVING]["member_steps"] < cell["methods"][SEARCH]["member_steps"]
    assert cell["methods"][LIGHTNING]["lr"] is not None  # Lightning's lr_find runs on the MLP
    text = (tmp_path / "search_bench.md").read_text()
    assert text.count("| search: ") == 3 and "halving: median regret <= 5%" in text
    assert [t["target"][:6] for t in report["summary"]["targets"]] == ["search"] * 3 + ["halvin"] * 2


# -- the grid: one batched population equals the plain runs --------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd(momentum=0.9)", "adam"])
def test_grid_population_equals_plain_train(optimizer: str) -> None:
    problem, lrs, seeds = get_problem("blobs"), [0.003, 0.05, 3.0], [100, 101]
    batched = grid_losses(problem, optimizer, lrs, seeds, epochs=3)
    plain = [[finder.train(problem, optimizer, lr, s, 3) for s in seeds] for lr in lrs]
    for row, ref in zip(batched, plain):
        for got, want in zip(row, ref):
            assert got == pytest.approx(want, rel=1e-5) or (math.isinf(got) and math.isinf(want))


@pytest.mark.parametrize("optimizer", ["sgd(momentum=0.9)", "adam"])
def test_fit_with_a_constant_schedule_equals_the_plain_constant_lr(optimizer: str) -> None:
    problem = get_problem("moons")
    batches = finder.batches(problem, 7, 2)
    assert fit(problem, optimizer, Constant(0.02), 7, batches) == pytest.approx(finder.train(problem, optimizer, 0.02, 7, 2), rel=1e-6)
    assert fit(problem, optimizer, 0.02, 7, batches) == pytest.approx(finder.train(problem, optimizer, 0.02, 7, 2), rel=1e-6)


def test_lightning_failure_is_recorded_with_its_reason() -> None:
    from lrkit.bench.search import lightning_suggestion

    blobs = get_problem("blobs")
    frozen = Problem(name="frozen", task="classification", x_train=blobs.x_train, y_train=blobs.y_train, x_test=blobs.x_test,
                     y_test=blobs.y_test, num_classes=3, batch_size=32, epochs=1, lr=0.1,
                     make_model=lambda: torch.nn.Flatten())  # fmt: skip
    lr, note = lightning_suggestion(frozen, "adam", 0, 20)
    assert lr is None and note is not None and note.startswith("lr_find failed: ValueError")


# -- the summary's arithmetic ---------------------------------------------------------------------------------------
def _method(loss: float | None, *, shape: str = "constant", wall: float = 1.0, lr: float | None = 0.01) -> dict[str, Any]:
    return {"lr": lr, "shape": shape, "spec": "constant(value=0.01)", "note": None, "losses": [loss, loss], "wall": wall,
            "result_wall": wall, "member_steps": 10}  # fmt: skip


def _cell(problem: str, search: float, halving: float, shapes: float, shape: str, grid_wall: float = 10.0) -> dict[str, Any]:
    methods = {SEARCH: _method(search, wall=2.0), HALVING: _method(halving, wall=0.5), SHAPES: _method(shapes, shape=shape, wall=4.0),
               RANGE_TEST: _method(None, lr=None)}  # fmt: skip
    return {"problem": problem, "optimizer": "adam", "seeds": [100, 101], "grid": [[0.01, [1.0, 1.0]], [0.1, [0.5, None]]],
            "methods": methods, "grid_wall": grid_wall, "grid_steps": 100}  # fmt: skip


def test_mean_loss_grid_best_and_regret() -> None:
    cell = _cell("blobs", 1.05, 1.2, 0.9, "cosine")
    assert mean_loss([1.0, 3.0]) == 2.0 and mean_loss([1.0, None]) == math.inf and mean_loss(None) == math.inf
    assert grid_best(cell) == 1.0  # the 0.1 row blew up on one seed: it cannot be the best
    assert regrets(cell) == pytest.approx({SEARCH: 0.05, HALVING: 0.2, SHAPES: -0.1, RANGE_TEST: math.inf})


def test_summary_groups_shapes_and_wall_ratios() -> None:
    cells = [_cell("blobs", 1.01, 1.02, 1.01, "constant", grid_wall=10.0), _cell("digits_cnn", 1.3, 1.04, 1.2, "one_cycle", grid_wall=40.0),
             _cell("sequence", 1.0, 1.5, 0.8, "cosine", grid_wall=50.0)]  # fmt: skip
    s = summarize(cells)
    all_search = s["methods"]["all"][SEARCH]
    assert all_search["median"] == pytest.approx(0.01) and all_search["worst"] == pytest.approx(0.3)
    assert all_search["within"] == pytest.approx(2 / 3)
    assert s["methods"]["cnn"][SEARCH]["median"] == pytest.approx(0.3) and s["methods"]["sequence"][HALVING]["median"] == pytest.approx(0.5)
    assert s["methods"]["all"][RANGE_TEST]["within"] == 0.0
    assert (s["shapes"]["cells"], s["shapes"]["non_constant_wins"]) == (3, 2)
    assert s["shapes"]["median_change_when_won"] == pytest.approx(((1.2 / 1.3 - 1) + (0.8 - 1)) / 2)
    assert s["cost"]["full"] == pytest.approx({"median": 2 / 40, "total": 6 / 100})
    assert s["cost"]["halving_over_full"] == pytest.approx({"median": 0.25, "total": 0.25})
    assert s["cost"]["member_steps"][SEARCH] == 30
    met = {t["target"]: t["met"] for t in s["targets"]}
    assert met == {"search: median regret <= 2%": True, "search: cells within 10% of the grid's best >= 90%": False,
                   "search: wall time <= 15% of the grid's": True, "halving: wall time <= half of the full search's": True,
                   "halving: median regret <= 5%": True}  # fmt: skip
    text = table({"cells": cells, "summary": s})
    assert "| search: cells within 10% of the grid's best >= 90% | 66.7% | not met |" in text
    assert "| digits_cnn/adam | 0.01 (1) | 30.0% (0.01) | 4.0% (0.01) | 20.0% (0.01 one_cycle) | none | 5.0% | 25.0% |" in text


@pytest.mark.parametrize(("median", "met"), [(0.02, True), (0.0201, False)])
def test_target_bound_is_inclusive(median: float, met: bool) -> None:
    from lrkit.bench.search_report import targets

    s = {"methods": {"all": {SEARCH: {"median": median, "within": 1.0}}}, "cost": {}}
    first, *rest = targets(s)
    assert first["met"] is met and [t["met"] for t in rest] == [True, False, False, False]  # absent values are not met


# -- the config's checks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"problems": ("nope",)}, "parameter 'problems'"),
        ({"problems": ("blobs", "blobs")}, "must name each one once"),
        ({"optimizers": ("adagrad",)}, "must be of a family with an lr grid"),
        ({"optimizers": ("frobnicate",)}, "parameter 'optimizers'"),
        ({"seeds": (0, 100)}, "must not hold the search seed 0"),
        ({"seeds": ()}, "at least one seed"),
        ({"grid_points": 1}, "parameter 'grid_points'"),
        ({"workers": 0}, "parameter 'workers'"),
    ],
)
def test_bad_config_is_a_lab_error(change: dict[str, Any], message: str) -> None:
    import dataclasses

    with pytest.raises(LabError, match="bench search") as err:
        dataclasses.replace(Config(), **change).check()
    assert message in str(err.value)


@pytest.mark.parametrize(
    "args", [("--problems", "nope"), ("--optimizers", "adagrad"), ("--seeds", "0,1"), ("--seeds", "a,b"), ("--grid-points", "1")]
)
def test_cli_rejects_bad_options_with_exit_2(run_cli: Callable[..., Any], tmp_path: Any, args: tuple[str, ...]) -> None:
    result = run_cli("bench", "search", *args, "--out", tmp_path)
    assert result.exit_code == 2
    assert not (tmp_path / "bench_search.json").exists()
