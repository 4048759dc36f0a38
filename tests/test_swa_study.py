"""`lrkit study swa`: the arms' schedules and averaging plans, the run through the CLI, and its figure in the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

import lrkit
from lrkit.errors import LabError
from lrkit.lab.averaging import SWA_ARMS, read_arm, swa_arm
from lrkit.lab.runner import members_of, study
from lrkit.lab.studies import STUDIES
from lrkit.schedules import Averaging


def test_the_study_is_registered_with_every_arm_at_three_lrs() -> None:
    d = STUDIES["swa"]
    assert d.defaults == tuple(f"{arm}@x{k}" for k in ("0.3", "1", "3") for arm in SWA_ARMS) and d.lr_varies


def test_arms_schedules_and_plans() -> None:
    # blobs: 16 steps an epoch; 8 epochs: SWA takes over at epoch 6 (step 96)
    members = members_of("swa", values=["none@x1", "swa-lr@0.02", "swa@x1", "swa-cyclic@x2", "ema@x1"], seeds=1, epochs=8)
    none, swa_lr, swa, cyclic, ema = members
    assert none.lr == lrkit.cosine(start=0.01, steps=128) and none.average is None
    assert swa_lr.lr == lrkit.schedules.swa_schedule(lrkit.constant(0.02), swa_start=96, swa_lr=0.01, anneal_steps=16)
    assert swa_lr.average is None
    assert swa.average == Averaging(start=111, every=16) and swa.lr(112) == pytest.approx(0.005)
    cycle = cyclic.lr.values(np.arange(96, 128))
    assert cyclic.lr(95) == 0.02 and cycle[[0, 16]].tolist() == pytest.approx([0.01, 0.01]) and cycle[15] == pytest.approx(0.001, rel=0.1)
    assert cyclic.average == Averaging(start=111, every=16)  # at each cycle's end: its lowest lr
    assert ema.average is not None and ema.average.kind == "ema" and ema.average.decay == pytest.approx(1 - 10 / 128)


@pytest.mark.parametrize("text", ["swa", "swa@", "avg@x1", "swa@-1", "swa@x0", "swa@1e4", "swa@xfast"])
def test_bad_values_name_the_study(text: str) -> None:
    with pytest.raises(LabError, match=r"^study: parameter 'values' must be ARM@LR"):
        read_arm(text)
    with pytest.raises(LabError, match=r"^study: parameter 'values'"):
        study("swa", values=[text], seeds=1, epochs=1)


def test_a_short_budget_still_averages() -> None:
    schedule, plan = swa_arm("swa-cyclic@x1", 0.1, total_steps=8, steps_per_epoch=8)  # one epoch: no constant phase
    assert plan == Averaging(start=7, every=8) and schedule(0) == pytest.approx(0.05)


def test_cli_runs_the_study_and_reports_the_figure(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    values = "none@x1,swa@x1,swa-cyclic@x1,ema@x1,none@x3,swa@x3"
    done = run_cli("study", "swa", "--problem", "moons", "--values", values, "--seeds", "2", "--epochs", "8", "--out", tmp_path)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "swa-averaging.png").stat().st_size > 1000
    assert "swa-averaging" in (tmp_path / "swa-report.html").read_text() or "averaging" in (tmp_path / "swa-report.html").read_text()
    r = study("swa", problem="moons", values=values.split(","), seeds=2, epochs=8, out=tmp_path, report=False)  # resumes: nothing to train
    final = r.final()
    assert sorted(set(final["value"])) == sorted(values.split(","))
    assert np.isfinite(final["test_loss"]).all()
    # the averaged arms report their average: after the takeover their test curves differ from the live run's
    curves = r.curves("test_loss")
    assert not np.array_equal(curves["swa@x1"][:, -1], curves["none@x1"][:, -1])
