"""`lrkit search` through click's runner: its files, its agreement with `search_lr` and a plain torch replay, and its errors."""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

import lrkit
from lrkit.search import SearchResult
from lrkit.search.result import judge

RunCli = Callable[..., Result]
SMALL = ("--problem", "blobs", "--epochs", "2", "--lrs", "0.001,0.03,1.0")


# -- mistakes: one line, exit 2, before any training (none of these needs the engine) --------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--lrs", "0.01,abc"), "lrkit search: parameter '--lrs' must be a comma-separated list of numbers, got 'abc'"),
        (("--lrs", "0.01,-1"), "lrkit search: parameter '--lrs' must be > 0, got -1.0"),
        (("--lrs", "0.01,inf"), "lrkit search: parameter '--lrs' must be finite, got inf"),
        (("--lrs", " , "), "lrkit search: parameter '--lrs' must be a comma-separated list of numbers, got ' , '"),
        (("--weight-decays", "0,-0.1"), "lrkit search: parameter '--weight-decays' must be >= 0, got -0.1"),
        (("--shapes", "cosine,zigzag"), "lrkit search: parameter '--shapes' must be one of 'constant', 'cosine', 'one_cycle', 'wsd'"),
        (("--shapes", ""), "lrkit search: parameter '--shapes' must name at least one shape (constant, cosine, one_cycle"),
        (("--optimizer", "lion"), "lrkit search: parameter '--optimizer' must be one of 'sgd', 'nesterov'"),
        (("--optimizer", "sgd(momentum=2)"), "Optim: parameter 'momentum' must lie in [0, 1), got 2"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_one_line_and_makes_no_folder(args: tuple[str, ...], message: str, tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("search", "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"lrkit: error: {message}"), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--problem", "regression", "--metric", "accuracy"), "lrkit search: parameter '--metric' must be 'none' for the regression"),
        (("--problem", "nope"), "get_problem: parameter 'name' must be a built-in problem"),
        (("--problem", "os:abort"), "get_problem: parameter 'name' must name a function of your own module"),
    ],
)  # fmt: skip
def test_a_bad_problem_or_metric_is_one_line(args: tuple[str, ...], message: str, tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("search", "--out", tmp_path, *args)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"lrkit: error: {message}"), line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [("--budget", "half"), ("--seeds", "0"), ("--epochs", "0"), ("--metric", "f1"), ("--device", "nosuch")])
def test_click_refuses_bad_choices_and_ranges(args: tuple[str, ...], tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("search", "--out", tmp_path, *args)
    assert res.exit_code == 2 and "Traceback" not in res.output and args[0] in res.output, res.output


def test_help_lists_the_options_shapes_and_optimizers(run_cli: RunCli) -> None:
    res = run_cli("search", "--help")
    assert res.exit_code == 0, res.output
    for word in ("--problem", "--optimizer", "--shapes", "--lrs", "--seeds", "--weight-decays", "--budget", "--metric", "--seed",
                 "--device", "--out", "one_cycle", "step_decay", "rmsprop", "halving", "pkg.module:function"):  # fmt: skip
        assert word in res.output, word
    assert "search" in run_cli("--help").output


# -- end to end (the engine is `lrkit.torch.search`) ------------------------------------------------
def test_search_writes_plot_table_json_and_the_winning_spec(tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "run"
    res = run_cli("search", *SMALL, "--optimizer", "adam", "--shapes", "constant,cosine", "--metric", "accuracy", "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = SearchResult.load(out / "search.json")
    assert len(result.candidates) == 6 and {c["shape"] for c in result.candidates} == {"constant", "cosine"}
    assert result.judged_by == "metric" and result.metric_name == "accuracy"
    assert (result.epochs, result.optimizer, result.seeds) == (2, "adam", [0])
    _, winner = judge(result.val_loss, result.metric, result.epochs_trained, result.diverged, result.judged_by, result.epochs)
    assert result.winner == winner
    (spec,) = (out / "schedule.txt").read_text().splitlines()
    assert lrkit.parse(spec) == result.schedule
    with (out / "search.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and [float(r["lr"]) for r in rows] == [c["lr"] for c in result.candidates]
    assert f"winner: lr={result.lr:.3g}" in res.output and "wrote search.png" in res.output


def test_the_command_is_search_lr_and_its_winner_replays_in_plain_torch(tmp_path: Path, run_cli: RunCli) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lrkit.lab.problems import get_problem

    res = run_cli("search", *SMALL, "--metric", "none", "--seed", "3", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    saved = SearchResult.load(tmp_path / "search.json")
    assert saved.judged_by == "val_loss" and saved.metric is None and saved.seeds == [3]
    # the winner, trained by hand: torch's momentum SGD under lrkit.Scheduler, on the loader the command made
    p = get_problem("blobs", seed=3)
    order = torch.Generator().manual_seed(3)
    loader = DataLoader(TensorDataset(p.x_train, p.y_train), batch_size=p.batch_size, shuffle=True, generator=order)
    torch.manual_seed(3)
    model = p.make_model()
    opt = lrkit.Optim("sgd", momentum=0.9).to_torch(model.parameters(), lr=1.0)
    sched = lrkit.Scheduler(opt, lr=saved.schedule)
    losses = []
    for _ in range(2):
        for x, y in loader:
            opt.zero_grad()
            p.loss(model(x), y).backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            losses.append(float(p.loss(model(p.x_test), p.y_test)))
    assert saved.val_loss[saved.winner, 0].tolist() == pytest.approx(losses, rel=1e-4)


def test_a_users_own_regression_problem_is_judged_by_the_loss(tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_search_problem.py").write_text(textwrap.dedent(
        """
        import torch

        def make(seed=0):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(128, 3, generator=g)
            y = x @ torch.tensor([1.0, -2.0, 0.5])
            return (lambda: torch.nn.Linear(3, 1)), (x[:96], y[:96], x[96:], y[96:])
        """
    ))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    res = run_cli("search", "--problem", "my_search_problem:make", "--epochs", "2", "--lrs", "0.01,0.1", "--weight-decays", "0,0.01",
                  "--seeds", "2", "--budget", "halving", "--seed", "5", "--out", tmp_path / "out")  # fmt: skip
    assert res.exit_code == 0, res.output
    result = SearchResult.load(tmp_path / "out" / "search.json")
    assert result.judged_by == "val_loss" and result.metric is None and "judged by val loss" in res.output
    assert (result.budget, result.seeds, len(result.table)) == ("halving", [5, 6], 8)
    assert sorted((c["lr"], c["weight_decay"]) for c in result.candidates) == [(0.01, 0.0), (0.01, 0.01), (0.1, 0.0), (0.1, 0.01)]
