"""The tutorials in examples/ run as scripts (one CPU thread each) and print the findings they claim; each finding is checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, out: Path) -> dict[str, Any]:
    """Run examples/`script` with its figures into `out`; its last line's JSON findings."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "KERAS_BACKEND": "torch", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("FINDINGS "), done.stdout[-2000:]
    return dict(json.loads(last.removeprefix("FINDINGS ")))


def test_every_tutorial_is_tested() -> None:
    tested = {"01_lr_dynamics.py", "02_adaptive_optimizers.py", "03_cyclical_lr.py", "04_restarts_and_averaging.py",
              "05_landscape_primer.py", "06_search_and_adapters.py"}  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("[0-9]*.py")} == tested


@pytest.mark.slow
def test_lr_dynamics(tmp_path: Path) -> None:
    f = run("01_lr_dynamics.py", tmp_path)
    acc, swing = f["accuracy"], f["swing"]
    assert swing["1"] > 1.5 * max(swing["0.1"], swing["0.01"])  # lr 1.0 oscillates
    assert min(acc["0.1"], acc["0.01"]) > 0.75 > max(acc["0.0001"], acc["1e-05"], acc["1"])  # 0.1-0.01 learn; 1e-4 crawls
    assert f["epochs_to_75"]["0.9"] < f["epochs_to_75"]["0"]  # momentum reaches the plateau sooner
    assert f["patience_final_lr"]["2"] < f["patience_final_lr"]["10"] / 10  # a short patience ends with a lower lr
    assert {p.name for p in tmp_path.glob("*.png")} >= {"lr-accuracy.png", "lr-sensitivity.png", "momentum-accuracy.png"}


@pytest.mark.slow
def test_adaptive_optimizers(tmp_path: Path) -> None:
    f = run("02_adaptive_optimizers.py", tmp_path)
    d = f["defaults"]
    assert min(d["adam"], d["rmsprop"], d["adagrad"]) > d["sgd"] + 0.05  # at the defaults SGD crawls
    reach = dict(zip(f["adam_lrs"], f["adam_epochs_to_75"]))
    assert reach[3e-4] < float("inf") and f["adam_fastest"] > 3e-4 and reach[f["adam_fastest"]] < reach[3e-4] / 5
    assert (tmp_path / "adam-lr.png").stat().st_size > 0


@pytest.mark.slow
def test_cyclical_lr(tmp_path: Path) -> None:
    f = run("03_cyclical_lr.py", tmp_path)
    assert 1e-4 < f["low"] < f["high"] < 1.0
    reach, final = f["steps_to_target"], f["final_accuracy"]
    tuned = f"constant {f['tuned_constant']:g}"
    # the bounds of one 100-step test come close to the best of a 5-lr sweep; one-cycle ends best of all
    assert reach["triangular"] <= 1.5 * reach[tuned] and final["triangular"] >= final[tuned] - 0.005
    assert final["one-cycle"] == max(final.values()) and reach["one-cycle"] < f["total_steps"]
    assert (tmp_path / "range-test.png").exists()


@pytest.mark.slow
def test_restarts_and_averaging(tmp_path: Path) -> None:
    f = run("04_restarts_and_averaging.py", tmp_path)
    assert min(f["final_accuracy"].values()) > 0.95
    assert f["sgdr_cycle_end_accuracy"] == sorted(f["sgdr_cycle_end_accuracy"])  # each restart ends better
    swa = f["swa"]
    assert swa["SWA average"][0] < 0.85 * swa["last iterate"][0]  # the average beats the noisy last iterate


@pytest.mark.slow
def test_landscape_primer(tmp_path: Path) -> None:
    f = run("05_landscape_primer.py", tmp_path)
    gd, heavy = f["gd"], f["heavy_ball"]
    assert gd["0.19"][0] < 1e-10 and not gd["0.19"][1] and gd["0.21"][1]  # converges iff lr * 10 < 2
    assert heavy["0.3"][0] < 1e-6 and heavy["0.4"][1]  # heavy ball: up to (2 + 2 * 0.9) / 10
    assert f["saddle_stuck_distance"] < 1e-6 and f["saddle_noise_gain"] > 1.0  # GD sits in the saddle, noise escapes
    assert f["curvature"]["0.3"] < f["curvature"]["0.01"] / 2  # a larger lr ends flatter
    assert Path(f["page"]).stat().st_size > 10_000


@pytest.mark.slow
def test_search_and_adapters(tmp_path: Path) -> None:
    f = run("06_search_and_adapters.py", tmp_path)
    assert f["candidates"] == 27 * 2 and 1e-4 <= f["lr"] <= 1.0
    assert f["steps"] == {"keras": 24, "lightning": 24, "hf": 24}
    assert f["gaps"]["lightning"] == 0.0 and f["gaps"]["hf"] == 0.0 and f["gaps"]["keras"] < 1e-6  # Keras computes in float32
