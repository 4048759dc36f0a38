"""`lrkit.search.SearchResult`: the judging rule, the table, CSV, JSON (NaN/inf), the plot, and loading without torch."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrkit
from lrkit.errors import FinderError
from lrkit.search import SearchCost, SearchResult
from lrkit.search.result import final_values, judge

nan, inf = math.nan, math.inf


def make(loss: Any, *, metric: Any = None, trained: Any = None, diverged: Any = None, judged_by: str = "val_loss",
         decays: list[float] | None = None, **extra: Any) -> SearchResult:  # fmt: skip
    """A synthetic search over K candidates (lrs 1e-3, 1e-2, ...; constant then cosine), its winner chosen by `judge`."""
    loss = np.asarray(loss, dtype=np.float64)
    k, s, e = loss.shape
    trained = np.full((k, s), e) if trained is None else np.asarray(trained)
    diverged = np.zeros((k, s), bool) if diverged is None else np.asarray(diverged)
    decays = decays or [0.0] * k
    cands = [{"lr": 10.0 ** (i - 3), "shape": "constant" if i % 2 == 0 else "cosine", "weight_decay": decays[i],
              "spec": repr(lrkit.constant(10.0 ** (i - 3)))} for i in range(k)]  # fmt: skip
    metric = None if metric is None else np.asarray(metric, dtype=np.float64)
    _, winner = judge(loss, metric, trained, diverged, judged_by, e)
    fields = {"epochs": e, "steps_per_epoch": 5, "budget": "full", "optimizer": "adam", "wall_seconds": 2.5, "member_steps": k * s * e * 5}
    fields |= {"seeds": list(range(s)), "metric_name": None if metric is None else "accuracy"}
    return SearchResult(cands, val_loss=loss, metric=metric, epochs_trained=trained, diverged=diverged, winner=winner, judged_by=judged_by,
                        **(fields | extra))  # fmt: skip


# -- the judging rule ------------------------------------------------------------------------------
def test_final_value_is_the_last_epoch_trained() -> None:
    curves = np.array([[[3.0, 2.0, 1.0], [3.0, 9.0, nan]], [[nan, nan, nan], [4.0, 4.0, 4.0]]])
    assert final_values(curves, np.array([[3, 2], [0, 3]])).tolist()[0] == [1.0, 9.0]
    assert np.isnan(final_values(curves, np.array([[3, 2], [0, 3]]))[1, 0])


@pytest.mark.parametrize(
    ("loss", "diverged", "scores", "winner"),
    [
        ([[[1.0, 0.5]], [[1.0, 0.3]]], [[False], [False]], [0.5, 0.3], 1),  # the lower final loss wins
        ([[[1.0, 0.5], [1.0, 0.7]], [[1.0, 0.1], [1.0, 0.2]]], None, [0.6, 0.15], 1),  # the mean over seeds
        ([[[1.0, 0.5], [1.0, 0.7]], [[1.0, 0.1], [1.0, nan]]], [[False, False], [False, True]], [0.6, inf], 0),  # one diverged seed
        ([[[1.0, 0.5]], [[1.0, inf]]], None, [0.5, inf], 0),  # a non-finite final not flagged is no better
        ([[[1.0, 0.4]], [[1.0, 0.4]]], None, [0.4, 0.4], 0),  # a tie: the earlier candidate
    ],
)  # fmt: skip
def test_scores_and_winner_by_loss(loss: Any, diverged: Any, scores: list[float], winner: int) -> None:
    r = make(loss, diverged=diverged)
    assert r.scores.tolist() == pytest.approx(scores) and r.winner == winner
    assert r.lr == r.candidates[winner]["lr"]


def test_metric_judges_higher_is_better_and_ties_go_to_the_lower_loss() -> None:
    loss = [[[1.0, 0.5]], [[1.0, 0.3]], [[1.0, 0.9]], [[2.0, nan]]]
    acc = [[[0.5, 1.0]], [[0.5, 1.0]], [[0.5, 0.8]], [[0.5, nan]]]
    r = make(loss, metric=acc, judged_by="metric", diverged=[[False], [False], [False], [True]])
    assert r.scores.tolist() == [1.0, 1.0, 0.8, -inf]
    assert r.winner == 1  # accuracy ties at 1.0: candidate 1 has the lower val loss
    by_loss = make(loss, metric=acc, judged_by="val_loss", diverged=[[False], [False], [False], [True]])
    assert by_loss.scores.tolist() == [0.5, 0.3, 0.9, inf]


def test_a_candidate_dropped_by_halving_is_scored_at_its_rung_but_never_wins() -> None:
    loss = [[[1.0, 0.2, nan, nan]], [[1.0, 0.6, 0.5, 0.4]], [[1.0, 0.9, nan, nan]]]
    r = make(loss, trained=[[2], [4], [2]], budget="halving")
    assert r.scores.tolist() == [0.2, 0.4, 0.9]  # candidate 0's rung value is the best number, yet it stopped early
    assert r.winner == 1 and r.dropped.tolist() == [True, False, True]


def test_no_complete_candidate_is_a_clear_error() -> None:
    with pytest.raises(FinderError, match=r"judge: parameter 'val_loss' must have one candidate .* got '2 of 2 candidates diverged'"):
        judge(np.full((2, 1, 2), nan), None, np.ones((2, 1), int), np.ones((2, 1), bool), "val_loss", 2)
    with pytest.raises(FinderError, match="judge: parameter 'metric' must be given"):
        judge(np.ones((1, 1, 1)), None, np.ones((1, 1), int), np.zeros((1, 1), bool), "metric", 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"val_loss": np.ones((2, 1, 3))}, "parameter 'val_loss' must have shape (2, 1, 2)"),
        ({"diverged": np.zeros((1, 1), bool)}, "parameter 'diverged' must have shape (2, 1)"),
        ({"winner": 2}, "parameter 'winner'"),
        ({"judged_by": "metric"}, "parameter 'judged_by' may be 'metric' only with a metric"),
        ({"budget": "half"}, "parameter 'budget' must be one of 'full', 'halving'"),
        ({"metric": np.ones((2, 2, 2))}, "parameter 'metric' must have shape (2, 1, 2)"),
    ],
)  # fmt: skip
def test_an_inconsistent_result_is_refused(change: dict[str, Any], message: str) -> None:
    r = make([[[1.0, 0.5]], [[1.0, 0.3]]])
    fields = {name: getattr(r, name) for name in r.__dataclass_fields__} | change
    with pytest.raises(FinderError, match=f"^SearchResult: {message.replace('(', '[(]').replace(')', '[)]')}"):
        SearchResult(**fields)


# -- what a result reports -------------------------------------------------------------------------
def test_table_has_one_row_per_candidate_and_seed() -> None:
    import pandas as pd

    loss = [[[1.0, 0.5], [1.0, 0.7]], [[1.0, 0.1], [2.0, nan]]]
    r = make(loss, metric=[[[0.1, 0.6], [0.1, 0.5]], [[0.1, 0.9], [0.1, nan]]], trained=[[2, 2], [2, 1]],
             diverged=[[False, False], [False, True]], judged_by="metric")  # fmt: skip
    rows = r.table
    assert [(row["candidate"], row["seed"]) for row in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rows[3] == {"candidate": 1, "lr": 0.01, "shape": "cosine", "weight_decay": 0.0, "seed": 1, "val_loss": 2.0, "metric": 0.1,
                       "diverged": True, "epochs": 1}  # fmt: skip
    frame = pd.DataFrame(rows)
    assert frame.shape == (4, 9) and frame["val_loss"].tolist()[:3] == [0.5, 0.7, 0.1]
    assert "metric" not in make(loss).table[0]


def test_csv_holds_the_table(tmp_path: Path) -> None:
    r = make([[[1.0, nan]], [[1.0, 0.3]]], diverged=[[True], [False]], trained=[[1], [2]])
    with r.to_csv(tmp_path / "s.csv").open() as f:
        read = list(csv.DictReader(f))
    assert [row["val_loss"] for row in read] == ["1.0", "0.3"]
    assert [row["diverged"] for row in read] == ["True", "False"]
    assert list(read[0]) == list(r.table[0]) and len(read) == len(r.table)


def test_curves_schedule_cost_and_summary() -> None:
    r = make([[[1.0, 0.5]], [[1.0, 0.3]]], wall_seconds=4.0, member_steps=30)
    assert r.curves is r.val_loss and r.curves.shape == (2, 1, 2)
    assert r.schedule == lrkit.constant(0.01) and lrkit.parse(repr(r.schedule)) == r.schedule
    assert r.cost == SearchCost(wall_seconds=4.0, member_steps=30, equivalent_runs=3.0)  # 30 steps / (2 epochs x 5)
    text = r.summary()
    assert "winner: lr=0.01 cosine" in text and "val loss 0.3" in text and "3 single runs" in text


# -- JSON ------------------------------------------------------------------------------------------
def test_json_round_trip_keeps_nan_and_inf(tmp_path: Path) -> None:
    loss = [[[1.0, inf], [nan, nan]], [[1.0, 0.3], [1.0, 0.2]]]
    r = make(loss, metric=[[[0.5, -inf], [nan, nan]], [[0.6, 0.8], [0.6, 0.9]]], trained=[[2, 0], [2, 2]],
             diverged=[[True, True], [False, False]], judged_by="metric", warnings=["a note"], batched=False,
             member_steps=np.int64(40), seeds=[np.int64(0), np.int64(1)])  # numpy integers, as an engine may give  # fmt: skip
    text = r.to_json(tmp_path / "deep" / "search.json")
    assert json.loads(text)["val_loss"][0] == [[1.0, "inf"], ["nan", "nan"]]  # strict JSON: no bare NaN / Infinity
    back = SearchResult.load(tmp_path / "deep" / "search.json")
    assert back.to_dict() == r.to_dict()
    for name in ("val_loss", "metric", "epochs_trained", "diverged"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
        assert getattr(back, name).dtype == getattr(r, name).dtype
    assert (back.winner, back.judged_by, back.batched, back.warnings) == (1, "metric", False, ["a note"])
    assert (back.seeds, back.member_steps) == ([0, 1], 40)
    assert back.scores.tolist() == r.scores.tolist() and str(back.table) == str(r.table)  # str: NaN == NaN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "SearchResult.from_json: parameter 'text' must be the JSON of a SearchResult"),
        ("[1, 2]", "SearchResult.from_dict: parameter 'data' must be a dict"),
        ('{"seeds": [0]}', "SearchResult.from_dict: parameter 'data' must have the keys"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_search_is_a_finder_error(text: str, message: str) -> None:
    with pytest.raises(FinderError, match=f"^{message}"):
        SearchResult.from_json(text)


def test_a_damaged_saved_search_is_a_finder_error(tmp_path: Path) -> None:
    data = make([[[1.0, 0.5]], [[1.0, 0.3]]]).to_dict()
    with pytest.raises(FinderError, match="SearchResult: parameter 'val_loss' must have shape"):
        SearchResult.from_dict(data | {"val_loss": [[[1.0]]]})
    with pytest.raises(FinderError, match=r"SearchResult\.from_dict: parameter 'candidates' must hold dicts with keys"):
        SearchResult.from_dict(data | {"candidates": [{"lr": 0.1}, {"lr": 0.2}]})
    with pytest.raises(FinderError, match=r"SearchResult\.load: parameter 'path' must be a readable file"):
        SearchResult.load(tmp_path / "missing.json")


def test_load_works_without_torch(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    make([[[1.0, 0.5]], [[1.0, 0.3]], [[1.0, nan]]], diverged=[[False], [False], [True]]).to_json(path)
    code = f"""
        import sys
        sys.modules["torch"] = None  # `import torch` raises ImportError, as on a machine without it
        import lrkit
        r = lrkit.SearchResult.load({str(path)!r})
        fig = r.plot()
        print(r.lr, r.schedule, r.scores.tolist(), len(r.table), type(fig).__name__, sys.modules.get("torch") is not None)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0.01 constant(value=0.01) [0.5, 0.3, inf] 3 Figure False"


# -- the plot --------------------------------------------------------------------------------------
def _labels(fig: Any) -> list[str]:
    return [line.get_label() for line in fig.axes[0].get_lines()]


def test_plot_draws_the_u_per_shape_marks_diverged_and_the_winner() -> None:
    loss = [[[1.0, 0.9]], [[1.0, 0.5]], [[1.0, 0.4]], [[1.0, 0.6]], [[1.0, nan]]]
    r = make(loss, diverged=[[False], [False], [False], [False], [True]])
    fig = r.plot()
    assert _labels(fig) == ["constant", "cosine", "diverged", "winner: lr=0.1 constant"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    constant_line = ax.get_lines()[0]
    assert constant_line.get_xdata().tolist() == [1e-3, 1e-1] and constant_line.get_ydata().tolist() == [0.9, 0.4]
    diverged = ax.get_lines()[2]
    assert diverged.get_xdata().tolist() == [10.0] and diverged.get_ydata().tolist() == [1.0]  # the top edge, in axes coordinates
    assert diverged.get_transform() == ax.get_xaxis_transform()
    star = ax.get_lines()[3]
    assert (star.get_xdata().tolist(), star.get_ydata().tolist()) == ([r.lr], [0.4])


def test_plot_draws_into_a_given_axes_and_splits_by_weight_decay() -> None:
    from lrkit.plot import new_figure

    base = new_figure(2)
    r = make([[[1.0, 0.9]], [[1.0, 0.5]], [[1.0, 0.4]], [[1.0, 0.6]]], decays=[0.0, 0.0, 0.1, 0.1])
    fig = r.plot(ax=base.axes[1])
    assert fig is base and not base.axes[0].get_lines()
    assert [line.get_label() for line in base.axes[1].get_lines()] == [
        "constant wd=0", "cosine wd=0", "constant wd=0.1", "cosine wd=0.1", "winner: lr=0.1 constant wd=0.1",
    ]  # fmt: skip


def test_plot_by_metric_marks_diverged_at_the_bottom_and_halving_hollow() -> None:
    loss = [[[1.0, 0.9, 0.8]], [[1.0, 0.5, 0.4]], [[1.0, 0.7, nan]], [[1.0, nan, nan]]]
    acc = [[[0.1, 0.5, 0.6]], [[0.1, 0.7, 0.8]], [[0.1, 0.6, nan]], [[0.1, nan, nan]]]
    r = make(loss, metric=acc, judged_by="metric", trained=[[3], [3], [2], [1]], diverged=[[False], [False], [False], [True]],
             budget="halving")  # fmt: skip
    ax = r.plot().axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert "accuracy" in ax.get_ylabel() and lines["diverged"].get_ydata().tolist() == [0.0]  # the worst edge of a metric
    hollow = lines["dropped by halving (at its rung)"]
    assert hollow.get_xdata().tolist() == [0.1] and hollow.get_ydata().tolist() == [0.6]
    assert lines["winner: lr=0.01 cosine"].get_ydata().tolist() == [0.8]


def test_plot_keeps_the_valley_in_view_when_a_loss_explodes() -> None:
    r = make([[[2.0, 2.0]], [[2.0, 1.0]], [[2.0, 0.5]], [[2.0, 1e6]]])
    low, high = r.plot().axes[0].get_ylim()
    assert 2.0 < high < 3.0 and low < 0.5  # the untrained level (2.0) in view, the exploded 1e6 above the top
    assert make([[[2.0, 2.0]], [[2.0, 0.5]]]).plot().axes[0].get_ylim()[1] > 2.0  # nothing explodes: matplotlib's own limits
