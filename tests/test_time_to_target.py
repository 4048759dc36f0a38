"""The time-to-target benchmark: its rules against hand-computed cases, the budgets and schedules, and a --quick CLI run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lrkit.bench import time_to_target_report as report
from lrkit.bench.time_to_target import EPOCHS, Config, Trace, constant_recipe, nadamw_schedule, one_cycle_schedule, train
from lrkit.cli import cli
from lrkit.errors import LabError
from lrkit.lab.problems import get_problem

INF = math.inf


# -- the rules -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "means, target, higher, expected",
    [
        ([0.5, 0.8, 0.9, 0.95], 0.9, True, 2),  # equal to the target reaches it
        ([0.5, 0.95, 0.8, 0.85], 0.9, True, 1),  # the smallest budget, even if a later one falls back
        ([0.5, 0.6, 0.7, 0.89], 0.9, True, None),
        ([0.3, 0.2, 0.1, 0.05], 0.1, False, 2),  # a loss reaches from above
        ([math.nan, 0.05, 0.2, 0.3], 0.1, False, 1),  # a diverged budget never reaches
        ([math.nan] * 4, 0.1, False, None),
    ],
)
def test_steps_to_target_is_the_smallest_budget_reaching_it(means: list[float], target: float, higher: bool, expected: int | None) -> None:
    assert report.steps_to_target(means, target, higher) == expected


def test_seed_mean_is_nan_when_a_seed_diverged() -> None:
    assert report.seed_mean([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert math.isnan(report.seed_mean([0.2, None, 0.9])) and math.isnan(report.seed_mean([0.2, INF])) and math.isnan(report.seed_mean([]))


def test_performance_profile_against_a_hand_computed_case() -> None:
    """Three recipes on three problems; the third problem solved only by b, the second by nobody but a and c."""
    walls = {"a": [10.0, 30.0, INF], "b": [20.0, INF, 5.0], "c": [40.0, 15.0, INF]}
    # per problem best: 10, 15, 5 -> ratios a: 1, 2, inf; b: 2, inf, 1; c: 4, 1, inf
    got = report.profile(walls, taus=(1.0, 1.5, 2.0, 3.0, 4.0))
    assert got == {
        "a": [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3],
        "b": [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3],
        "c": [1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3],
    }
    # area over [1, 4] / 3: a: ((4 - 1) + (4 - 2)) / 3 problems / 3; b the same; c: ((4 - 4) + (4 - 1)) / 3 / 3
    score = report.profile_score(walls)
    assert score == pytest.approx({"a": 5 / 9, "b": 5 / 9, "c": 3 / 9})
    fine = np.linspace(1.0, 4.0, 3001)  # the area read off the profile itself, numerically
    numeric = {r: float(np.trapezoid(v, fine)) / 3.0 for r, v in report.profile(walls, taus=list(fine)).items()}
    assert numeric == pytest.approx(score, abs=1e-3)


def test_a_problem_nobody_solves_counts_as_unsolved_for_all() -> None:
    assert report.profile({"a": [1.0, INF], "b": [2.0, INF]}, taus=(4.0,)) == {"a": [0.5], "b": [0.5]}
    assert report.profile_score({"a": [INF], "b": [INF]}) == {"a": 0.0, "b": 0.0}


def _record(values: dict[str, list[float]], walls: dict[str, list[float]], target: float = 0.9) -> dict[str, object]:
    recipes = {r: [{"epochs": e, "values": [v, v], "wall": w, "tuning_wall": 0.0, "choice": "x"}
                   for e, v, w in zip((1, 2, 4, 8), values[r], walls[r])] for r in values}  # fmt: skip
    return {"kind": "main", "problem": "p", "metric": "accuracy", "higher_is_better": True, "budgets": [1, 2, 4, 8],
            "steps_per_epoch": 10, "seeds": [0, 1], "target": target, "target_lr": 0.01, "recipes": recipes}  # fmt: skip


def test_summary_ratios_and_the_goal() -> None:
    """The constant reaches at 8 epochs (80 steps, 40 s); search at 2 (4x fewer steps, 6 s); one-cycle at 4, faster still."""
    values = {report.CONSTANT: [0.5, 0.7, 0.8, 0.9], report.SEARCH: [0.8, 0.91, 0.92, 0.93], report.ONE_CYCLE: [0.6, 0.8, 0.95, 0.95]}
    walls = {report.CONSTANT: [5.0, 10.0, 20.0, 40.0], report.SEARCH: [3.0, 6.0, 12.0, 24.0], report.ONE_CYCLE: [1.0, 2.0, 4.0, 8.0]}
    s = report.summarize([_record(values, walls)])
    rows = s["problems"]["p"]
    assert (rows[report.CONSTANT]["steps"], rows[report.SEARCH]["steps"], rows[report.ONE_CYCLE]["steps"]) == (80, 20, 40)
    assert (rows[report.SEARCH]["step_ratio"], rows[report.ONE_CYCLE]["step_ratio"]) == (4.0, 2.0)
    assert rows[report.SEARCH]["wall_ratio"] == pytest.approx(6.0 / 40.0)
    assert s["goal"]["recipe"] == report.ONE_CYCLE  # the best profile score among lrkit's recipes (4 s beats 6 s)
    assert (s["goal"]["steps_met"], s["goal"]["profile_met"], s["goal"]["met"]) == (False, True, False)  # 2x < 3x


def test_folklore_regret_by_hand() -> None:
    grid = {"lrs": [1e-4, 3e-4, 1e-3], "epochs": 5, "loss": [[2.0, 2.2], [1.0, 1.2], [0.5, None]], "acc": None}
    f = report.folklore({"problem": "regression", "grid": grid})
    # 1e-3 diverged on a seed: the best is 3e-4 itself, regret 0
    assert (f["best_lr_loss"], f["loss_regret"], f["acc_regret"]) == (3e-4, 0.0, None)
    grid["loss"] = [[2.0, 2.2], [1.0, 1.2], [0.5, 0.6]]
    grid["acc"] = [[0.5, 0.5], [0.8, 0.9], [0.9, 0.9]]
    f = report.folklore({"problem": "c", "grid": grid})
    assert f["best_lr_loss"] == 1e-3 and f["loss_regret"] == pytest.approx(1.1 / 0.55 - 1.0)
    assert f["best_lr_acc"] == 1e-3 and f["acc_regret"] == pytest.approx(0.05)


# -- budgets and schedules ----------------------------------------------------------------------------------
def test_budgets_halve_the_full_budget_three_times() -> None:
    for name, full in EPOCHS.items():
        assert Config().budgets(name) == [full // 8, full // 4, full // 2, full]
    assert Config(epochs_scale=0.1).budgets("regression") == [1, 2, 4, 8]  # a multiple of 8 epochs, at least 8
    assert Config().budgets("blobs") == [25, 50, 100, 200]  # a problem without its own entry: its default budget


@pytest.mark.parametrize("total", [16, 100, 1000])
def test_nadamw_schedule_is_sized_to_the_budget(total: int) -> None:
    s = nadamw_schedule(3e-3, total)
    warm = max(1, round(0.05 * total))
    values = s.values(np.arange(total + 1))
    assert values[0] == 0.0 and values[warm] == pytest.approx(3e-3) and int(np.argmax(values)) == warm
    assert values[total] == pytest.approx(0.0, abs=1e-15) and np.all(np.diff(values[warm:]) <= 1e-18)


@pytest.mark.parametrize("total", [20, 100, 1000])
def test_one_cycle_schedule_is_sized_to_the_budget(total: int) -> None:
    s = one_cycle_schedule(1e-4, 1e-2, total)
    values = s.values(np.arange(total))
    top = round(0.3 * total) - 1  # torch's OneCycleLR: the peak at pct_start * total - 1 (a whole step for these totals)
    assert values[0] == pytest.approx(1e-4) and int(np.argmax(values)) == top and values[top] == pytest.approx(1e-2)
    assert values[-1] == pytest.approx(1e-4 / 1e4)
    assert one_cycle_schedule(1e-2, 1e-3, total)(0) == pytest.approx(1e-3)  # high below low: a cycle from the high bound


def test_a_scheduled_run_ends_its_schedule_at_its_budget() -> None:
    p = get_problem("blobs")  # 16 steps an epoch
    t = train(p, "nadamw", 0, 3, schedule=nadamw_schedule(0.01, 3 * 16), at=[1, 3])
    assert t.lr[0] == pytest.approx(nadamw_schedule(0.01, 48)(16)) and t.lr[1] == 0.0


@pytest.mark.parametrize("optimizer, kwargs", [("adam", {"lr": 0.01}), ("adam", {"lr": 1e-3, "self_tuning": True}), ("prodigy", {})])
def test_a_shorter_budget_is_the_prefix_of_the_full_run(optimizer: str, kwargs: dict[str, object]) -> None:
    """The constant grid and the untuned recipes read every budget off one full run: the same numbers as a shorter run."""
    p = get_problem("blobs")
    full = train(p, optimizer, 1, 4, at=[2, 4], **kwargs)  # type: ignore[arg-type]
    short = train(p, optimizer, 1, 2, **kwargs)  # type: ignore[arg-type]
    assert (full.loss[0], full.acc[0], full.lr[0]) == (short.loss[0], short.acc[0], short.lr[0])


def test_the_tuned_constant_picks_the_best_lr_at_each_budget_and_counts_the_grid() -> None:
    def trace(acc: list[float], wall: list[float]) -> Trace:
        return Trace([0.0] * 2, acc, [0.0] * 2, wall)

    grid = {0.01: [trace([0.5, 0.9], [1.0, 2.0]), trace([0.6, 0.8], [1.5, 3.0])],  # means 0.55, 0.85
            0.1: [trace([0.7, 0.7], [1.0, 2.0]), trace([0.7, math.nan], [1.0, 1.0])]}  # means 0.7, nan (diverged)  # fmt: skip
    got = constant_recipe(get_problem("blobs"), grid, [4, 8])
    assert [b["choice"] for b in got] == ["lr 0.1", "lr 0.01"]
    assert got[0]["values"] == [0.7, 0.7] and got[1]["values"] == [0.9, 0.8]
    assert [b["wall"] for b in got] == [4.5, 8.0] and [b["tuning_wall"] for b in got] == [2.5, 3.0]


def test_bad_configs_name_the_function_parameter_and_value() -> None:
    cases = [
        (Config(grid=(1e-3,)), "parameter 'grid' must hold 0.0003"),
        (Config(seeds=(0, 100)), "parameter 'seeds' must not hold the search seed 100, got (0, 100)"),
        (Config(recipes=("nope",)), "parameter 'recipes' must be one of"),
        (Config(peaks=(0.01, -1.0)), "parameter 'peaks' must be > 0, got -1.0"),
        (Config(problems=()), "parameter 'problems' must name at least one of"),
    ]
    for config, message in cases:
        with pytest.raises(LabError, match=r"^bench time-to-target: ") as info:
            config.check()
        assert message in str(info.value)


# -- the command line ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_run_through_the_cli_writes_consistent_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "time-to-target", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "time_to_target.json").read_text())
    (cell,) = data["cells"]
    assert (cell["problem"], cell["budgets"], cell["seeds"], cell["metric"]) == ("regression", [1, 2, 4, 8], [0], "loss")
    assert sorted(cell["recipes"]) == sorted(report.RECIPES)
    finals = [row[0] for row in cell["grid"]["loss"]]  # one seed: the seed-mean is the run
    assert cell["target"] == min(finals) and cell["target_lr"] == cell["grid"]["lrs"][finals.index(min(finals))]
    constant = cell["recipes"][report.CONSTANT]
    assert constant[-1]["values"] == [cell["target"]] and constant[-1]["tuning_wall"] < constant[-1]["wall"]
    for name, runs in cell["recipes"].items():  # the summary's steps to target, recomputed from the runs
        means = [report.seed_mean(r["values"]) for r in runs]
        at = report.steps_to_target(means, cell["target"], higher_is_better=False)
        row = data["summary"]["problems"]["regression"][name]
        assert row["steps"] == (None if at is None else cell["budgets"][at] * 16)
        assert all(r["wall"] >= r["tuning_wall"] >= 0 for r in runs)
    assert data["summary"]["problems"]["regression"][report.CONSTANT]["step_ratio"] == 1.0
    text = (tmp_path / "time_to_target.md").read_text()
    assert "### regression: target loss" in text and "- goal: " in text and "| regression | 8 |" in text
    assert (tmp_path / "time_to_target_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote " in result.output


@pytest.mark.parametrize("args, message", [
    (["--recipes", "nope"], "parameter 'recipes' must be one of"),
    (["--seeds", "a,b"], "must be comma-separated integers"),
])  # fmt: skip
def test_cli_mistakes_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "time-to-target", "--quick", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) <= 3  # click's usage line, its hint, the error
