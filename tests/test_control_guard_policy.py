"""lrkit.control.guard_policy: the one incident policy both guards (torch, Keras) inherit, pure and torch-free."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import lrkit
from lrkit.control.guard_policy import GuardPolicy, Incident, spike_threshold
from lrkit.errors import ControlError, DivergenceError


def losses(seed: int, n: int = 600) -> list[float]:
    """A noisy falling loss with NaNs and spikes, isolated and in bursts."""
    rng = np.random.default_rng(seed)
    out = (2.0 * np.exp(-np.arange(n) / 200) + 0.1 + 0.02 * rng.standard_normal(n)).tolist()
    for t in rng.choice(np.arange(5, n), size=6, replace=False):
        out[t] = math.nan if rng.random() < 0.5 else out[t] * 1e4
    for t in (300, 301, 302):  # a burst: repeated incidents roll back
        out[t] = math.nan
    return out


def simulate(values: list[float], **options: float) -> GuardPolicy:
    """The pure policy driven as `lrkit.Guard.check` drives it, weights always finite (a snapshot is a step count)."""
    policy = GuardPolicy("Guard", **options)  # type: ignore[arg-type]
    snapshot = (0, policy.snapshot_taken(), 1.0)
    for value in values:
        step, policy.step = policy.step, policy.step + 1
        kind = policy.detect(value)
        if kind is None:
            if policy.snapshot_due:
                snapshot = (step, policy.snapshot_taken(), policy.scale)
            policy.good(value)
            continue
        action = policy.act(step, kind, value, restore=False, lr=0.1 * policy.scale)
        restored, lost = (step, 0) if action == "skip" else (snapshot[0], policy.restored(snapshot[1]))
        policy.record(Incident(step, kind, value, restored, lost, 0.0, 0.0, action))
    return policy


@pytest.mark.parametrize("seed", range(4))
def test_the_torch_guard_decides_exactly_as_the_pure_policy(seed: int) -> None:
    values = losses(seed)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = lrkit.Guard(model, opt, snapshot_every=50, max_rollbacks=50)
    for value in values:
        guard.check(value)
    pure = simulate(values, snapshot_every=50, max_rollbacks=50)
    got = [(i.step, i.kind, i.action, i.restored_step, i.steps_lost) for i in guard.incidents]
    assert got == [(i.step, i.kind, i.action, i.restored_step, i.steps_lost) for i in pure.incidents]
    assert {"skip", "rollback"} <= {i.action for i in guard.incidents} and guard.scale == pure.scale < 1.0


def test_a_repeat_past_max_rollbacks_raises_with_the_history() -> None:
    with pytest.raises(DivergenceError, match=r"Guard: training diverged again at step 3 \(nonfinite_loss, loss=nan\) after 1 rollbacks"):
        simulate([1.0, math.nan, math.nan, math.nan], max_rollbacks=1)


def test_the_spike_threshold_is_tolerant_only_at_the_start() -> None:
    assert spike_threshold([1.0] * 19, 20.0) == pytest.approx(6.0)  # 25% of the level in the first 20 losses
    assert spike_threshold([1.0] * 20, 20.0) == pytest.approx(1.02)


@pytest.mark.parametrize(
    ("option", "value"),
    [("snapshot_every", 0), ("spike", -1.0), ("window", 19), ("cut", 0.0), ("cut", 1.5), ("max_rollbacks", -1), ("repeat_window", 0)],
)
def test_bad_arguments_name_the_guard_and_the_parameter(option: str, value: float) -> None:
    with pytest.raises(ControlError, match=rf"KerasGuard: parameter '{option}'"):
        GuardPolicy("KerasGuard", **{option: value})  # type: ignore[arg-type]


def test_the_policy_imports_no_torch() -> None:
    code = "import sys, lrkit.control.guard_policy; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
