"""`lrkit find` and `lrkit bench finder --quick` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lrkit.cli import cli
from lrkit.torch.finder import LRFinderResult


def test_find_writes_plot_and_json(tmp_path: Path) -> None:
    out = tmp_path / "find"
    res = CliRunner().invoke(cli, ["find", "--problem", "moons", "--steps", "40", "--start", "1e-5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    png, saved = out / "lr_find.png", out / "lr_find.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = LRFinderResult.load(saved)
    assert result.suggestion is not None and f"{result.suggestion:.3g}" in res.output
    assert len(result.lrs) == result.stopped_at + 1 and result.lrs[0] == 1e-5


def test_find_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["find", "--start", "1", "--end", "0.1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "'start' must be below end" in res.output and "Traceback" not in res.output


def test_bench_finder_quick(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["bench", "finder", "--quick", "--out", str(tmp_path)])
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
