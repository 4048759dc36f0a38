"""Studies: the classic findings on blobs with 5 seeds, every study end to end, the store's resume, the report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import lrkit
from lrkit.errors import LabError
from lrkit.lab.problems import get_problem
from lrkit.lab.runner import members_of, study
from lrkit.lab.studies import STUDIES, Plan, named_schedules


def by_value(result: lrkit.lab.StudyResult) -> dict[str, dict[str, float]]:
    return {row["value"]: row for row in result.summary()}


def test_classic_lr_findings() -> None:
    r = study("lr", seeds=5)  # blobs, 200 epochs, 1e0 ... 1e-7
    rows = by_value(r)
    assert rows["1"]["test_acc"] < 0.7 or rows["1"]["diverged"] > 0  # unstable or poor
    assert rows["0.1"]["test_acc"] > 0.75 and rows["0.01"]["test_acc"] > 0.75
    for tiny in ("1e-06", "1e-07"):
        assert rows[tiny]["test_acc"] < 0.45  # three classes: chance is 1/3
    losses = [rows[v]["test_loss"] for v in r.values]
    best = int(np.argmin(losses))
    assert 0 < best < len(losses) - 1  # the U: both ends are worse than the middle


def test_classic_momentum_finding() -> None:
    rows = by_value(study("momentum", values=[0.0, 0.9], seeds=5, epochs=100))
    assert rows["0.9"]["epochs_to_0.75"] * 2 < rows["0"]["epochs_to_0.75"]  # median epochs to 75% test accuracy


def test_classic_patience_finding() -> None:
    r = study("patience", values=[2, 15], seeds=5, epochs=100)
    rows = by_value(r)
    assert rows["2"]["final_lr"] < rows["15"]["final_lr"]
    assert rows["2"]["final_lr"] < 0.01  # the plateau really cut the lr
    curves = r.curves("lr")["2"]
    assert (np.diff(curves, axis=1) <= 0).all()  # a plateau only lowers a constant lr


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_runs_with_its_defaults(name: str) -> None:
    r = study(name, seeds=1, epochs=4)
    table = r.to_pandas()
    assert len(table) == len(STUDIES[name].defaults) * 4
    assert set(table["value"]) == set(r.values)
    assert np.isfinite(table["lr"]).all()


def test_schedule_study_accepts_specs_and_named_shapes() -> None:
    plan = Plan(get_problem("blobs"), 10)
    shapes = named_schedules(plan)
    assert all(s.values(np.arange(plan.total_steps)).max() <= 0.01 + 1e-12 for s in shapes.values())
    members = members_of("schedule", values=["cosine", "linear(start=0.01, end=0.0, steps=50)"], seeds=1, epochs=10)
    assert members[1].lr == lrkit.parse("linear(start=0.01, end=0.0, steps=50)")


def test_batch_study_grows_the_batch_instead_of_decaying() -> None:
    r = study("batch", values=["decay-lr", "grow-batch"], seeds=1, epochs=8)
    t = r.to_pandas()
    decay, grow = t[t["value"] == "decay-lr"], t[t["value"] == "grow-batch"]
    np.testing.assert_allclose(decay["lr"].to_numpy()[[0, 4, 6]], [0.01, 0.002, 0.0004])
    assert (grow["lr"] == 0.01).all()
    steps = np.diff(np.r_[0, grow["updates"].to_numpy()])
    assert steps.tolist() == [16, 16, 16, 16, 4, 4, 1, 1]  # 32 -> 160 -> 500 (capped at the training set)


def test_resume_after_interrupt_finishes_missing_members_only(tmp_path: Path) -> None:
    kw = {"values": [0.1, 0.01, 0.001], "seeds": 2, "epochs": 3, "chunk": 2, "report": False}
    calls: list[tuple[int, int]] = []

    def interrupt(done: int, total: int) -> None:
        calls.append((done, total))
        if done > 6:  # inside the second population of two members
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study("lr", out=tmp_path, progress=interrupt, **kw)
    db = sqlite3.connect(tmp_path / "lr.sqlite")
    assert [m for (m,) in db.execute("SELECT member FROM members ORDER BY member")] == [0, 1]
    calls.clear()
    resumed = study("lr", out=tmp_path, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls[0] == (6, 18)  # the stored members are not trained again
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT member || '-' || epoch) FROM records").fetchone() == (18, 18)
    unbroken = study("lr", **kw)
    for col in ("test_loss", "train_acc", "lr"):
        np.testing.assert_array_equal(resumed.table[col], unbroken.table[col])
    calls.clear()
    study("lr", out=tmp_path, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls == [(18, 18)]  # complete: nothing to do
    study("lr", out=tmp_path, fresh=True, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls[1] == (0, 18)
    with pytest.raises(LabError, match="another spec"):
        study("lr", out=tmp_path, **{**kw, "seeds": 3})
    assert not list(tmp_path.glob("*.png"))  # report=False: the store only


def test_outputs_and_self_contained_report(tmp_path: Path) -> None:
    r = study("patience", values=[2, 5], seeds=2, epochs=4, out=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"patience.sqlite", "patience-curves.png", "patience-loss.png", "patience-sensitivity.png", "patience-lr.png",
                "patience-final.csv", "patience-records.csv", "patience-report.html"}  # fmt: skip
    assert expected <= names
    page = (tmp_path / "patience-report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and 'src="http' not in page
    assert len((tmp_path / "patience-records.csv").read_text().splitlines()) == 1 + 2 * 2 * 4
    assert r.plot_per_value("test_acc").axes[0].get_title() == "patience=2"


def test_regression_study_has_no_accuracy() -> None:
    r = study("lr", problem="regression", values=[0.01], seeds=1, epochs=2)
    assert np.isnan(r.table["test_acc"]).all() and np.isfinite(r.table["test_loss"]).all()


def test_bad_study_input() -> None:
    with pytest.raises(LabError, match="'momentum', 'decay'"):
        study("learning_rate")
    with pytest.raises(LabError, match="values"):
        study("lr", values=["fast"])
    with pytest.raises(LabError, match="values"):
        study("momentum", values=[1.5])
    with pytest.raises(LabError, match="distinct"):
        study("lr", values=[0.1, 0.1])
    with pytest.raises(LabError, match="optimizer names"):
        study("optimizer", values=["lion"])
    with pytest.raises(LabError, match="seeds"):
        study("lr", seeds=0)


def test_optimizer_study_takes_specs_at_torchs_default_lr() -> None:
    import inspect

    import torch

    members = members_of("optimizer", seeds=1, epochs=2)
    assert [m.optimizer for m in members] == [lrkit.Optim(f) for f in ("sgd", "rmsprop", "adagrad", "adam")]
    own = [torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adam]
    assert [m.lr(0) for m in members] == [inspect.signature(c).parameters["lr"].default for c in own]
    r = study("optimizer", values=["SGD(momentum=0.9)", "adam(weight_decay=0.01)"], seeds=1, epochs=2)
    assert r.values == ["sgd(momentum=0.9)", "adam(weight_decay=0.01)"]
    with pytest.raises(LabError, match="distinct"):
        study("optimizer", values=["sgd", "sgd(momentum=0.0)"])


def test_bad_study_input_types_are_type_errors() -> None:
    from lrkit.errors import LabTypeError

    for kwargs, param in [({"seeds": 2.0}, "seeds"), ({"epochs": "3"}, "epochs"), ({"values": "0.1"}, "values"),
                          ({"order": 1}, "order"), ({"fresh": 1}, "fresh"), ({"chunk": None}, "chunk")]:  # fmt: skip
        with pytest.raises(LabTypeError, match=f"study: parameter '{param}'"):
            study("lr", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LabError, match="study: parameter 'order' must be one of 'member', 'shared'"):
        study("lr", values=[0.1], order="random")
    with pytest.raises(lrkit.ScheduleError, match="parse"):
        study("schedule", values=["cosine(start=0.1)"])  # a spec's own error says what is wrong with it
    with pytest.raises(LabError, match="schedule names"):
        study("schedule", values=["cosinus"])
