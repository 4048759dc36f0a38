"""`lrkit find` and `lrkit bench finder --quick` through click's runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result

import lrkit
from lrkit.lab.problems import get_problem
from lrkit.torch.data import epoch_batches
from lrkit.torch.finder import LRFinderResult, find_lr, find_on_problem

RunCli = Callable[..., Result]


def test_find_writes_plot_and_json(tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "find"
    res = run_cli("find", "--problem", "moons", "--steps", "40", "--start", "1e-5", "--out", out)
    assert res.exit_code == 0, res.output
    png, saved = out / "lr_find.png", out / "lr_find.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = LRFinderResult.load(saved)
    assert result.suggestion is not None and f"{result.suggestion:.3g}" in res.output
    assert len(result.lrs) == result.stopped_at + 1 and result.lrs[0] == 1e-5


def test_find_rejects_bad_input_with_one_line(tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("find", "--start", "1", "--end", "0.1", "--out", tmp_path)
    assert res.exit_code == 2
    assert "'start' must be below end" in res.output and "Traceback" not in res.output


CLI_OPTIMIZER = "lrkit find: parameter '--optimizer'"


@pytest.mark.parametrize(("spec", "where"), [("sgd(momentum=2)", "Optim: parameter 'momentum'"), ("lion", CLI_OPTIMIZER),
                                             ("sgd(", CLI_OPTIMIZER), ("sgd(lr=__import__('os'))", CLI_OPTIMIZER)])  # fmt: skip
def test_find_rejects_a_bad_optimizer_with_one_line(spec: str, where: str, tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("find", "--optimizer", spec, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith(f"lrkit: error: {where}")
    assert not (tmp_path / "out").exists()


def test_find_help_names_the_optimizer_specs(run_cli: RunCli) -> None:
    res = run_cli("find", "--help")
    assert res.exit_code == 0 and "sgd(momentum=0.9)" in res.output and "rmsprop" in res.output


def test_find_default_is_momentum_sgd_as_before(tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("find", "--steps", "30", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    saved = LRFinderResult.load(tmp_path / "lr_find.json")
    # the same test written out by hand: torch's momentum SGD at the problem's lr, one epoch in lrkit's order
    p = get_problem("blobs", seed=0)
    torch.manual_seed(0)
    model = p.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=0.9)
    by_hand = find_lr(model, opt, p.loss, epoch_batches(p.x_train, p.y_train, p.batch_size, 0, 1), steps=30)
    assert saved.losses == by_hand.losses and saved.suggestions == by_hand.suggestions
    plain = find_on_problem("blobs", "sgd", steps=30)  # "sgd" is torch's default: momentum 0, another curve
    assert plain.losses != by_hand.losses


def test_find_on_problem_with_validation_accuracy() -> None:
    result = find_on_problem("blobs", lrkit.Optim("adam"), steps=20, start=1e-4, end=1.0, val_batches=2, accuracy=True, diverge=None)
    assert result.signal == "validation metric" and result.higher_is_better and len(result.lrs) == 20
    assert all(0.0 <= v <= 1.0 for v in result.losses)


def test_bench_finder_quick(tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("bench", "finder", "--quick", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "finder_bench.json").read_text())
    (cell,) = report["cells"]
    assert cell["problem"] == "blobs" and len(cell["grid"]) == 4
    rules = report["summary"]["rules"]
    assert {"lrkit", "valley", "steep", "minimum", "slide", "torch-lr-finder"} <= set(rules)
    best = min(v for _, v in cell["grid"] if v is not None)
    for rule, loss in cell["losses"].items():  # regret as defined: loss(suggested) / loss(grid best) - 1
        if loss is not None:
            assert rules[rule]["median"] == loss / best - 1.0
    assert (tmp_path / "finder_bench.png").exists() and "median regret" in (tmp_path / "finder_bench.md").read_text()
