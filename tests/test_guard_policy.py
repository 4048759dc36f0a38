"""lrkit.Guard's incident policy on the run of issue 12: isolated glitches are skipped at no lr cost, only repeats cut the lr.

The run itself (data, MLP, loop) is `bench/guard_recovery.py`'s, loaded by path, so the
benchmark's figures and these tests measure the same thing.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import lrkit


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "guard_recovery.py"
    spec = importlib.util.spec_from_file_location("guard_recovery", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["guard_recovery"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="module")
def clean() -> float:
    out = bench.train()
    assert out.incidents == [] and out.final_loss is not None  # no false alarm on the clean run
    return float(out.final_loss)


def test_issue_reproducer_nan_every_50_steps_keeps_the_lr_and_the_progress(clean: float) -> None:
    """Before: rollbacks to the step-0 snapshot, DivergenceError at step 275, the lr cut 32x."""
    out = bench.train(nan_at=range(25, 600, 50))
    assert out.error is None and out.lr == 0.1
    assert [(i.step, i.action) for i in out.incidents] == [(s, "skip") for s in range(25, 600, 50)]
    assert out.final_loss is not None and out.final_loss <= 1.05 * clean


@pytest.mark.parametrize("nan_at", [range(60, 600, 120), (150, 300, 450)], ids=["every 120", "3 isolated"])
def test_isolated_nans_cost_no_lr_cut(nan_at: range | tuple[int, ...], clean: float) -> None:
    """Before: 3 isolated NaNs left the lr at 1/8 and the final loss 1.6x the clean run's."""
    out = bench.train(nan_at=nan_at)
    assert out.error is None and out.lr == 0.1 and {i.action for i in out.incidents} == {"skip"}
    assert out.final_loss is not None and out.final_loss <= 1.05 * clean


def test_snapshots_keep_coming_between_incidents() -> None:
    """A repeat late in a run glitching every 50 steps rolls back to a recent snapshot, not to step 0."""
    out = bench.train(nan_at=[*range(25, 550, 50), 551, 552])
    rollback = out.incidents[-1]
    assert (rollback.step, rollback.action) == (552, "rollback")
    assert 450 <= rollback.restored_step < 552 and rollback.steps_lost <= 100
    assert out.lr == pytest.approx(0.05) and out.error is None


def test_real_divergence_ends_in_cut_lrs_or_a_divergence_error() -> None:
    out = bench.train(lr=50.0)
    assert sum(i.action == "rollback" for i in out.incidents) == 5 and out.lr == pytest.approx(50.0 / 32)
    assert out.error is not None and "after 5 rollbacks" in out.error
    moderate = bench.train(lr=1.0)  # a milder divergence: cut twice, then the run trains
    assert moderate.error is None and moderate.lr == pytest.approx(0.25)
    assert moderate.final_loss is not None and moderate.final_loss < 0.2


def test_a_spike_in_the_first_steps_is_caught_before_it_becomes_a_nan() -> None:
    """Before: a 1000x loss at step 5 passed unseen (no history yet) and the loss was inf at step 8."""
    x, y = bench.data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = lrkit.Guard(model, opt)
    losses = []
    for step in range(40):
        opt.zero_grad()
        i = step * bench.BATCH % bench.N
        loss = torch.nn.functional.mse_loss(model(x[i : i + bench.BATCH]), y[i : i + bench.BATCH]) * (1e3 if step == 5 else 1)
        losses.append(float(loss.detach()))
        if guard.check(loss):
            continue
        loss.backward()
        opt.step()
    assert [(i.step, i.kind, i.action) for i in guard.incidents] == [(5, "spike", "skip")]
    assert max(losses[6:]) < 1.0 and guard.scale == 1.0


def test_a_nan_loss_before_backward_is_a_skip_that_touches_nothing() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    guard = lrkit.Guard(model, opt, snapshot_every=2)
    for _ in range(5):
        opt.zero_grad()
        loss = model(torch.ones(3, 2)).pow(2).mean()
        assert not guard.check(loss)
        loss.backward()
        opt.step()
    weights = [p.detach().clone() for p in model.parameters()]
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    assert guard.check(torch.tensor(float("nan")))
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert all(torch.equal(opt.state[p]["momentum_buffer"], b) for p, b in zip(model.parameters(), buffers))
    assert opt.param_groups[0]["lr"] == 0.1 and guard.incidents[0].steps_lost == 0 and guard.rollbacks == 0


DDP_BODY = textwrap.dedent(
    """
    import lrkit

    NAN_AT = {0: {10, 40}, 1: {41}}  # rank 0 alone at 10; at 40/41 the ranks glitch one after the other: a repeat


    def run(rank):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        guard = lrkit.Guard(model, opt, snapshot_every=10)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank))
        skipped = []
        for step in range(60):
            opt.zero_grad()
            loss = model(x).pow(2).mean() * (float("nan") if step in NAN_AT[rank] else 1.0)
            if guard.check(loss):
                skipped.append(step)
                continue
            loss.backward()
            opt.step()
        incidents = [[i.step, i.kind, i.action, i.restored_step] for i in guard.incidents]
        return {"skipped": skipped, "incidents": incidents, "lr": opt.param_groups[0]["lr"]}
    """
)


def test_under_torch_distributed_all_ranks_take_the_same_decision(run_gloo: Callable[[str], list[dict[str, Any]]]) -> None:
    r0, r1 = run_gloo(DDP_BODY)
    assert r0["skipped"] == r1["skipped"] == [10, 40, 41]
    assert (
        [i[:3] for i in r0["incidents"]]
        == [i[:3] for i in r1["incidents"]]
        == [
            [10, "nonfinite_loss", "skip"],
            [40, "nonfinite_loss", "skip"],
            [41, "nonfinite_loss", "rollback"],
        ]
    )
    assert r0["incidents"][-1][3] == r1["incidents"][-1][3] and r0["lr"] == r1["lr"] == pytest.approx(0.05)
