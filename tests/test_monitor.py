"""lrkit.Monitor: what it records, where it writes, and the diagnosis of the classic blobs runs."""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit.analysis.diagnose import KINDS, Finding, diagnose
from lrkit.lab.problems import get_problem
from lrkit.torch.monitor import LearningRateMonitor, Monitor


@functools.cache
def _blobs_run(lr: float) -> Monitor:
    """The classic: SGD, 200 epochs, batch 32, MLP 2-50-3 on make_blobs (first 500 train); recorded every step."""
    problem = get_problem("blobs")
    torch.manual_seed(1)
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    mon = Monitor(opt, model)
    order = torch.Generator().manual_seed(1)
    step = 0
    for _ in range(problem.epochs):
        perm = torch.randperm(len(problem.x_train), generator=order)
        for batch in perm.split(problem.batch_size):
            opt.zero_grad()
            loss = problem.loss(model(problem.x_train[batch]), problem.y_train[batch])
            loss.backward()
            opt.step()
            mon.record(step, loss=loss)
            step += 1
    return mon


def test_blobs_lr_1_is_too_high() -> None:
    findings = _blobs_run(1.0).diagnose()
    assert [f.kind for f in findings] == ["lr_too_high"]
    assert findings[0].evidence["final_loss"] > findings[0].evidence["best_loss"] and findings[0].evidence["lr"] == 1.0
    assert "lower the lr" in findings[0].advice


@pytest.mark.parametrize("lr", [1e-5, 1e-7])
def test_blobs_tiny_lr_is_too_low(lr: float) -> None:
    findings = _blobs_run(lr).diagnose()
    assert [f.kind for f in findings] == ["lr_too_low"]
    assert findings[0].evidence["median_update_ratio"] < 1e-4
    assert "raise the lr" in findings[0].advice


def test_blobs_lr_001_is_healthy_without_false_alarm() -> None:
    mon = _blobs_run(0.01)
    findings = mon.diagnose()
    assert [f.kind for f in findings] == ["healthy"]
    assert findings[0].steps == (0, 3199)
    assert 1e-4 < findings[0].evidence["median_update_ratio"] < 1e-2
    assert findings[0].evidence["final_loss"] < 0.6 * findings[0].evidence["start_loss"]


def test_blobs_per_epoch_records_read_the_same() -> None:
    for lr, kind in [(1.0, "lr_too_high"), (1e-5, "lr_too_low")]:
        h = _blobs_run(lr).history
        every = slice(15, None, 16)
        found = diagnose(h["step"][every], h["loss"][every], lr=h["lr"][every], update_ratio=h["update_ratio"][every])
        assert [f.kind for f in found] == [kind]


def test_records_lr_momentum_and_closed_form_grad_norm_and_update_ratio() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    model = torch.nn.ParameterList([w])
    opt = torch.optim.SGD([w], lr=0.1)
    mon = Monitor(opt, model)
    for step in range(3):
        before = w.detach().clone()
        opt.zero_grad()
        loss = 0.5 * (w**2).sum()  # gradient = w, update = -0.1 w
        loss.backward()
        opt.step()
        mon.record(step, loss=loss)
        assert mon.history["grad_norm"][-1] == pytest.approx(float(before.norm()))
    h = mon.history
    assert math.isnan(h["update_ratio"][0])  # no previous weights yet
    assert h["update_ratio"][1:] == pytest.approx([0.1, 0.1])  # ||0.1 w|| / ||w||
    assert h["lr"].tolist() == [0.1] * 3 and h["momentum"].tolist() == [0.0] * 3
    assert h["step"].dtype == np.int64


def test_update_ratio_is_per_step_between_sparse_records() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    opt = torch.optim.SGD([w], lr=1.0)
    mon = Monitor(opt, torch.nn.ParameterList([w]))
    mon.record(0)
    with torch.no_grad():
        w += torch.tensor([0.0, 0.4])
    mon.record(4)
    assert mon.history["update_ratio"][1] == pytest.approx(0.1)


def test_groups_get_their_own_columns_and_betas_are_momentum() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    opt = torch.optim.Adam([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.01}], lr=0.1, betas=(0.8, 0.99))
    mon = LearningRateMonitor(opt, model)
    for step in range(2):
        opt.zero_grad()
        model(torch.ones(4, 2)).sum().backward()
        opt.step()
        mon.record(step, loss=1.0, accuracy=0.5)
    h = mon.history
    assert h["lr/0"].tolist() == [0.1, 0.1] and h["lr/1"].tolist() == [0.01, 0.01]
    assert h["momentum/1"].tolist() == [0.8, 0.8] and h["accuracy"].tolist() == [0.5, 0.5]
    assert {"grad_norm/0", "grad_norm/1", "update_ratio/0", "update_ratio/1"} <= set(h)


def test_scheduler_plateau_scale_and_multiplier_are_recorded() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    sched = lrkit.Scheduler(opt, lr=lrkit.constant(0.1), plateau=lrkit.Plateau(patience=0, factor=0.5))
    mon = Monitor(opt, scheduler=sched)
    for step, metric in enumerate([1.0, 1.0, 1.0]):
        sched.observe(metric)
        mon.record(step, loss=metric)
    assert mon.history["plateau_scale"].tolist() == [1.0, 0.5, 0.25]
    assert mon.history["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert mon.history["multiplier"].tolist() == [1.0] * 3


def test_late_metric_is_nan_before() -> None:
    mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    mon.record(0, loss=1.0)
    mon.record(1, loss=0.5, val_loss=0.7)
    assert math.isnan(mon.history["val_loss"][0]) and mon.history["val_loss"][1] == 0.7


def _filled(n: int = 60) -> Monitor:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mon = Monitor(opt, model)
    x, y = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)), torch.ones(16, 1)
    for step in range(n):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        mon.record(step, loss=loss)
    return mon


def test_to_csv_round_trips(tmp_path: Path) -> None:
    mon = _filled(5)
    mon.to_csv(tmp_path / "h.csv")
    with open(tmp_path / "h.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and list(rows[0]) == list(mon.history)
    for name, column in mon.history.items():
        assert np.allclose([float(r[name]) for r in rows], column, equal_nan=True)


class _FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.flushed = False

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        self.flushed = True


def test_to_tensorboard_with_a_fake_writer_skips_nan() -> None:
    mon = _filled(3)
    writer = _FakeWriter()
    mon.to_tensorboard(writer)
    h = mon.history
    assert ("loss", h["loss"][2], 2) in writer.scalars and writer.flushed
    assert [s for s in writer.scalars if s[0] == "update_ratio"] == [("update_ratio", h["update_ratio"][i], i) for i in (1, 2)]
    with pytest.raises(lrkit.ControlError, match="add_scalar"):
        mon.to_tensorboard(object())


def test_to_tensorboard_with_a_real_summary_writer(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    mon = _filled(4)
    writer = SummaryWriter(log_dir=str(tmp_path))
    mon.to_tensorboard(writer, prefix="train/")
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [0, 1, 2, 3]
    assert [e.value for e in loss] == pytest.approx(mon.history["loss"].tolist(), rel=1e-6)


def test_plot_draws_the_four_panels() -> None:
    fig = _filled().plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["learning rate", "loss", "gradient norm", "update / weight per step"]
    assert len(fig.axes[1].get_lines()) == 1 and fig.axes[3].get_yscale() == "log"


def test_plot_marks_columns_not_recorded() -> None:
    mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    mon.record(0, loss=1.0)
    fig = mon.plot()
    assert [t.get_text() for t in fig.axes[2].texts] == ["not recorded"]


def test_diagnose_rules_on_synthetic_curves() -> None:
    t = np.arange(2000)
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.02, t.size)
    plateau = np.where(t < 500, 2.0 - 1.5 * t / 500, 0.5) + noise  # fast progress, then nothing for 3/4 of the run
    found = diagnose(t, plateau)
    assert [f.kind for f in found] == ["plateau"] and found[0].steps[0] >= 400 and found[0].steps[1] == 1999
    assert [f.kind for f in diagnose(t, 1.0 / (1 + t / 100) + noise)] == ["healthy"]
    assert [f.kind for f in diagnose(t, np.where(t > 1500, np.nan, 1.0))] == ["lr_too_high"]
    assert diagnose(t, np.where(t > 1500, np.inf, 1.0))[0].evidence["first_nonfinite_step"] == 1501
    assert [f.kind for f in diagnose(t, 1.0 + noise, update_ratio=np.full(t.size, 0.05))] == ["lr_too_high"]  # loud, no progress
    shifted = diagnose(t, -100.0 + 1.0 / (1 + t / 100) + noise)  # negative losses: the same verdict
    assert [f.kind for f in shifted] == ["healthy"]


def test_finding_kinds_and_text() -> None:
    f = diagnose(np.arange(100), np.linspace(1.0, 5.0, 100), lr=np.full(100, 0.3))[0]
    assert f.kind in KINDS and isinstance(f, Finding)
    assert str(f).startswith("lr_too_high, steps") and "lr=0.06" in f.advice


@pytest.mark.parametrize(
    "kwargs, match",
    [({"windows": 2}, "windows"), ({"nonsense": 1.0}, "valid: windows"), ({"ratio_low": -1.0}, "ratio_low")],
)
def test_diagnose_bad_thresholds(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(lrkit.ControlError, match=match):
        diagnose(np.arange(100), np.ones(100), **kwargs)


def test_diagnose_needs_enough_records_and_loss() -> None:
    with pytest.raises(lrkit.ControlError, match="at least 40"):
        diagnose(np.arange(10), np.ones(10))
    mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    mon.record(0)
    with pytest.raises(lrkit.ControlError, match="loss"):
        mon.diagnose()


def test_bad_input() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(lrkit.ControlError, match="optimizer"):
        Monitor("adam")  # type: ignore[arg-type]
    with pytest.raises(lrkit.ControlError, match="scheduler"):
        Monitor(opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1))  # type: ignore[arg-type]
    mon = Monitor(opt)
    mon.record(3, loss=1.0)
    with pytest.raises(lrkit.ControlError, match="must increase"):
        mon.record(3, loss=1.0)
    with pytest.raises(lrkit.ControlError, match="loss"):
        mon.record(4, loss="low")  # type: ignore[arg-type]
    with pytest.raises(lrkit.ControlError, match="step"):
        mon.record(-1)


def test_learning_rate_monitor_is_the_same_recorder() -> None:
    assert LearningRateMonitor is Monitor and lrkit.LearningRateMonitor is lrkit.Monitor


def _lab_run(name: str, optimizer: str, lr: float, epochs: int, per_epoch: bool) -> Monitor:
    """A lab problem trained with `lrkit.Optim(optimizer)` in lrkit's minibatch order; the loss per step or the train loss per epoch."""
    from lrkit.torch.data import MinibatchOrder

    problem = get_problem(name)
    torch.manual_seed(0)
    model = problem.make_model()
    opt = lrkit.Optim(optimizer).to_torch(model.parameters(), lr=lr)
    mon, order, step = Monitor(opt, model), MinibatchOrder(len(problem.x_train), 0), 0
    for _ in range(epochs):
        for idx in order.epoch(problem.batch_size):
            opt.zero_grad()
            loss = problem.loss(model(problem.x_train[idx]), problem.y_train[idx])
            loss.backward()
            opt.step()
            if not per_epoch:
                mon.record(step, loss=loss)
            step += 1
        if per_epoch:
            with torch.no_grad():
                mon.record(step, loss=problem.loss(model(problem.x_train), problem.y_train))
    return mon


@pytest.mark.parametrize(
    "name, optimizer, lr, epochs, per_epoch",
    [("moons", "adam", 3e-3, 200, False), ("blobs", "sgd", 0.01, 600, True)],
    ids=["moons", "blobs"],
)
def test_a_run_at_its_floor_is_converged_not_a_plateau(name: str, optimizer: str, lr: float, epochs: int, per_epoch: bool) -> None:
    """Before: both were a `plateau` with the advice to drop the lr."""
    findings = _lab_run(name, optimizer, lr, epochs, per_epoch).diagnose()
    assert [f.kind for f in findings] == ["converged"]
    assert "floor" in findings[0].advice and "drop the lr" not in findings[0].advice
    assert findings[0].evidence["progress_before"] > 0.2 and findings[0].steps[1] == epochs * 16 - (0 if per_epoch else 1)


def test_early_plateaus_stay_plateaus() -> None:
    t = np.arange(2000)
    noise = np.random.default_rng(1).normal(0.0, 0.01, t.size)
    kinked = np.maximum(2.0 * np.exp(-t / 200.0), 1.0) + noise  # falling fast, then stuck at 1.0 from step 139
    linear = np.where(t < 500, 2.0 - 1.5 * t / 500, 0.5) + noise
    for curve in (kinked, linear):
        found = diagnose(t, curve)
        assert [f.kind for f in found] == ["plateau"] and "drop the lr" in found[0].advice
    middle = np.interp(t, [0, 300, 1400, 2000], [2.0, 1.0, 1.0, 0.2]) + noise  # stuck in the middle, then falling again
    assert [f.kind for f in diagnose(t, middle)] != ["converged"]


@pytest.mark.parametrize("name", ["lr", "momentum", "grad_norm", "update_ratio", "multiplier", "plateau_scale", "lr/0"])
def test_record_refuses_metrics_named_like_the_columns_it_reads(name: str) -> None:
    """Before: `record(step, loss=..., lr=5.0)` silently dropped the user's 5.0."""
    mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    with pytest.raises(lrkit.ControlError, match=rf"^Monitor\.record: parameter '{name}' is a column the Monitor reads itself.*got 5\.0$"):
        mon.record(0, loss=1.0, **{name: 5.0})
    assert len(mon) == 0
    mon.record(0, loss=1.0, target_lr=5.0)
    assert mon.history["target_lr"].tolist() == [5.0] and mon.history["lr"].tolist() == [0.1]
