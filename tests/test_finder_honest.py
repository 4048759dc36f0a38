"""Issue 12: the range test says when its curve carries no signal, and `lrkit find` answers every mistake with exit 2 and one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result

import lrkit
from lrkit.analysis import suggest
from lrkit.finder_result import LRFinderResult

RunCli = Callable[..., Result]


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 2, generator=g), torch.randn(256, 1, generator=g)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


@pytest.mark.parametrize(
    "loss_fn",
    [lambda o, t: (o * 0).sum() + 1.0, lambda o, t: 1.0 + 1e-9 * torch.nn.functional.mse_loss(o, t), lambda o, t: (o * 0).sum() + t.mean()],
    ids=["constant", "below-rounding", "batch-noise-only"],
)
def test_find_lr_on_a_flat_loss_suggests_nothing_and_says_why(loss_fn: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    result = lrkit.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, batches(), steps=100)
    assert result.stop_reason == "completed"
    assert result.suggestion is None and set(result.suggestions.values()) == {None}
    assert len(result.warnings) == 1 and result.warnings[0].startswith("no signal:")
    with pytest.raises(lrkit.FinderError, match="has no suggestion"):
        result.apply(torch.optim.SGD(model.parameters(), lr=0.1))


def test_no_signal_separates_noise_from_a_real_descent() -> None:
    lrs = np.logspace(-7, 1, 100)
    flagged_noise = flagged_descent = 0
    for seed in range(50):
        noise = np.random.default_rng(seed).normal(0.0, 0.05, 100)
        flagged_noise += suggest.no_signal(lrs, 1.0 + noise) is not None
        flagged_descent += suggest.no_signal(lrs, 2.0 - 0.3 * np.tanh(np.log10(lrs) + 3) + noise) is not None
    assert flagged_noise >= 48 and flagged_descent == 0


def test_flat_repeats_give_no_suggestion_and_no_spread_warning() -> None:
    lrs = np.logspace(-5, 0, 60).tolist()
    r = LRFinderResult.from_runs(lrs, [[0.7] * 60, [0.7] * 60], stop_reason="completed")
    assert r.suggestion is None and r.run_suggestions == [None, None] and r.spread == 1.0
    assert [w.split(":")[0] for w in r.warnings] == ["no signal"]
    assert LRFinderResult.from_json(r.to_json()) == r


FLAT_PROBLEM = """
import torch

class Flat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def forward(self, x):
        return 0.0 * self.layer(x)

def make():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    y = (x[:, 0] > 0).long()
    return Flat, (x, y, x, y)
"""


def test_find_cli_says_in_one_line_that_a_flat_problem_has_no_signal(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flatproblem.py").write_text(FLAT_PROBLEM)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = run_cli("find", "--problem", "flatproblem:make", "--steps", "30", "--out", tmp_path / "out")
    sys.modules.pop("flatproblem", None)
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("warning: ")]
    assert len(notes) == 1 and notes[0].startswith("warning: no signal:"), res.output
    assert "bounds" not in res.output and LRFinderResult.load(tmp_path / "out" / "lr_find.json").suggestion is None


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--seed", "-1"], "--seed"),
        (["--device", "nosuch"], "--device"),
        (["--out", "/proc/x"], "--out"),
        (["--problem", "os:system"], "os:system"),
        (["--problem", "builtins:exit"], "builtins:exit"),
        (["--problem", "lrkit:nope"], "lrkit:nope"),
    ],
)
def test_find_cli_mistakes_are_exit_2_and_one_line_before_work(args: list[str], names: str, tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("find", *args, *([] if "--out" in args else ["--out", tmp_path / "out"]))
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    line = res.output.strip().splitlines()[-1]
    assert names in line and (line.startswith("Error:") or line.startswith("lrkit: error:")), line
    assert not (tmp_path / "out" / "lr_find.json").exists()


def test_find_cli_refuses_an_out_under_a_file(tmp_path: Path, run_cli: RunCli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_cli("find", "--out", blocker / "out")
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("Error: Invalid value for '--out'"), res.output


def test_find_cli_runs_on_the_device_it_is_given(tmp_path: Path, run_cli: RunCli) -> None:
    res = run_cli("find", "--problem", "moons", "--steps", "20", "--device", "cpu", "--out", tmp_path)
    assert res.exit_code == 0 and LRFinderResult.load(tmp_path / "lr_find.json").lrs, res.output
