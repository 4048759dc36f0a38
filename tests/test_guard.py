"""lrkit.Guard: injected NaNs and loss spikes are rolled back, the run still ends well; bookkeeping and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit.lab.problems import get_problem
from lrkit.torch.guard import Guard

EPOCHS, BATCH, N = 80, 32, 500
STEPS = EPOCHS * math.ceil(N / BATCH)
Inject = Callable[[int, torch.nn.Module, torch.Tensor], torch.Tensor]


def _no_fault(step: int, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return loss


def _train(inject: Inject = _no_fault, *, grads: bool = False, guarded: bool = True, **guard_args: Any) -> tuple[float, Guard | None]:
    """Adam + cosine on the blobs problem; returns the final full-train loss and the guard."""
    problem = get_problem("blobs")
    torch.manual_seed(0)
    model = problem.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = lrkit.Scheduler(opt, lr=lrkit.cosine(start=0.01, steps=STEPS))
    guard = Guard(model, opt, sched, **guard_args) if guarded else None
    order = torch.Generator().manual_seed(0)
    step = 0
    for _ in range(EPOCHS):
        perm = torch.randperm(N, generator=order)
        for i in range(0, N, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = inject(step, model, problem.loss(model(problem.x_train[idx]), problem.y_train[idx]))
            step += 1
            if guard is not None and not grads and guard.check(loss):
                continue
            loss.backward()
            if guard is not None and grads and guard.check(loss, grads=True):
                continue
            opt.step()
            sched.step()
    with torch.no_grad():
        return problem.loss(model(problem.x_train), problem.y_train).item(), guard


@pytest.fixture(scope="module")
def clean_loss() -> float:
    loss, guard = _train()
    assert guard is not None and guard.incidents == []  # no false alarm on a clean run
    return loss


def _fault_steps(seed: int, count: int = 2, snapshot_every: int = 50) -> set[int]:
    rng = np.random.default_rng(seed)
    return set(rng.choice(np.arange(2 * snapshot_every, STEPS - snapshot_every), count, replace=False).tolist())


def _loss_times(factor: float, steps: set[int]) -> Inject:
    def inject(step: int, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        return loss * factor if step in steps else loss

    return inject


def _poison_weight(steps: set[int]) -> Inject:
    """A weight turns NaN (as after an overflowing update): every loss from then on is NaN until the rollback."""

    def inject(step: int, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        if step in steps:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")
        return loss

    return inject


def _assert_recovered(loss: float, clean: float, guard: Guard | None, expected: int, action: str, snapshot_every: int = 50) -> None:
    """Recovered close to the clean run, with `expected` incidents all handled by `action`, and no lr cut (they are isolated)."""
    assert guard is not None
    assert math.isfinite(loss) and all(torch.isfinite(p).all() for p in guard.model.parameters())
    assert abs(loss - clean) <= 0.1 * clean, (loss, clean, guard.incidents)
    assert len(guard.incidents) == expected and {i.action for i in guard.incidents} == {action}
    assert all(0 <= i.steps_lost <= snapshot_every for i in guard.incidents)
    assert guard.scale == 1.0 and guard.scheduler.multiplier == 1.0 and guard.rollbacks == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_nan_loss_at_random_steps_is_survived(seed: int, clean_loss: float) -> None:
    faults = _fault_steps(seed)
    loss, guard = _train(_loss_times(float("nan"), faults), snapshot_every=50)
    _assert_recovered(loss, clean_loss, guard, expected=2, action="skip")
    assert guard is not None and {i.kind for i in guard.incidents} == {"nonfinite_loss"}


@pytest.mark.parametrize("seed", [2, 3])
def test_million_fold_loss_spike_at_random_steps_is_survived(seed: int, clean_loss: float) -> None:
    faults = _fault_steps(seed)
    loss, guard = _train(_loss_times(1e6, faults), snapshot_every=50)
    _assert_recovered(loss, clean_loss, guard, expected=2, action="skip")
    assert guard is not None and [i.step for i in guard.incidents] == sorted(faults)
    assert {i.kind for i in guard.incidents} == {"spike"}


def test_poisoned_weights_are_rolled_back(clean_loss: float) -> None:
    loss, guard = _train(_poison_weight(_fault_steps(4)), snapshot_every=50)
    _assert_recovered(loss, clean_loss, guard, expected=2, action="restore")  # non-finite weights: the snapshot, at the same lr


def test_infinite_gradients_are_caught_with_grads_true(clean_loss: float) -> None:
    faults = _fault_steps(5)

    def inject(step: int, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        if step not in faults:
            return loss
        tap = next(model.parameters()).sum()
        tap.register_hook(lambda g: torch.full_like(g, float("inf")))  # the loss stays finite, its gradient does not
        return loss + 0 * tap

    loss, guard = _train(inject, grads=True, snapshot_every=50)
    _assert_recovered(loss, clean_loss, guard, expected=2, action="skip")
    assert guard is not None and {i.kind for i in guard.incidents} == {"nonfinite_grad"}


def _tiny() -> tuple[torch.nn.Linear, torch.optim.SGD]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> torch.Tensor:
    opt.zero_grad()
    loss = model(torch.ones(3, 2)).pow(2).mean()
    loss.backward()
    opt.step()
    return loss


def test_rollback_restores_model_optimizer_and_cuts_lr_of_plain_optimizer() -> None:
    model, opt = _tiny()
    guard = Guard(model, opt, snapshot_every=5, spike=None)  # the losses fall to ~0; the 1.0s below are not spikes here
    for _ in range(5):
        assert not guard.check(_step(model, opt).detach())
    guard.check(1.0)  # step 5: snapshot taken before this update
    saved = [p.detach().clone() for p in model.parameters()]
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    for _ in range(3):
        _step(model, opt)
        guard.check(1.0)
    assert guard.check(float("nan"))  # isolated, the weights finite: a skip, nothing restored, no cut
    assert opt.param_groups[0]["lr"] == 0.1 and not all(torch.equal(p, s) for p, s in zip(model.parameters(), saved))
    assert guard.check(float("inf"))  # repeated before the run recovered: roll back, cut the lr
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), saved))
    assert all(torch.equal(opt.state[p]["momentum_buffer"], m) for p, m in zip(model.parameters(), momentum))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert guard.check(float("inf"))  # same snapshot again: the cut compounds
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025) and guard.scale == 0.25 and guard.rollbacks == 2
    assert [(i.step, i.action, i.restored_step, i.steps_lost) for i in guard.incidents] == [
        (9, "skip", 9, 0),
        (10, "rollback", 5, 4),
        (11, "rollback", 5, 0),
    ]


def test_second_rollback_to_same_snapshot_is_not_corrupted_by_steps_in_between() -> None:
    model, opt = _tiny()
    guard = Guard(model, opt, snapshot_every=2)
    for _ in range(3):
        guard.check(_step(model, opt).detach())
    state = {k: v.clone() for k, v in opt.state[next(model.parameters())].items()}
    guard.check(float("nan"))
    guard.check(float("nan"))
    for _ in range(2):
        _step(model, opt)  # in-place optimizer updates must not write into the kept snapshot
    guard.check(float("nan"))
    assert all(torch.equal(opt.state[next(model.parameters())][k], v) for k, v in state.items())


def test_lrkit_scheduler_rewinds_and_keeps_the_cut_in_its_multiplier() -> None:
    model, opt = _tiny()
    sched = lrkit.Scheduler(opt, lr=lrkit.linear(start=0.1, end=0.0, steps=100))
    guard = Guard(model, opt, sched, snapshot_every=10)
    for _ in range(15):
        guard.check(_step(model, opt).detach())
        sched.step()
    guard.check(float("nan"))
    assert sched.last_epoch == 15 and sched.multiplier == 1.0  # an isolated skip: the schedule goes on
    guard.check(float("nan"))
    assert sched.last_epoch == 10 and sched.multiplier == 0.5
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * lrkit.linear(start=0.1, end=0.0, steps=100)(10))
    guard.check(float("nan"))
    assert sched.multiplier == 0.25


def test_torch_scheduler_state_is_restored() -> None:
    model, opt = _tiny()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    guard = Guard(model, opt, sched, snapshot_every=3)
    for _ in range(7):
        guard.check(_step(model, opt).detach())
        sched.step()
    guard.check(float("nan"))
    guard.check(float("nan"))
    assert sched.last_epoch == 6 and opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * 0.5)  # snapshots at 0, 3, 6


def test_snapshots_live_on_cpu() -> None:
    model, opt = _tiny()
    guard = Guard(model, opt)
    _step(model, opt)
    guard.snapshot()
    assert all(t.device.type == "cpu" for t in guard._snapshot.model.values())


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (-100.0, 1.0), (0.0, 1e-6), (-5.0, 1e4)])
def test_spike_test_is_scale_and_shift_free(shift: float, scale: float) -> None:
    model, opt = _tiny()
    guard = Guard(model, opt, snapshot_every=1000)
    noise = np.random.default_rng(0).normal(1.0, 0.1, 300)
    assert not any(guard.check(shift + scale * x) for x in noise)  # no false alarm on plain noise
    assert not guard.check(shift + scale * 2.0)  # ten deviations: a bad batch, not a spike
    assert guard.check(shift + scale * 1e6) and guard.incidents[-1].kind == "spike"


def test_spike_none_only_checks_finiteness() -> None:
    model, opt = _tiny()
    guard = Guard(model, opt, spike=None)
    assert not any(guard.check(x) for x in [1.0] * 50 + [1e12])
    assert guard.check(float("nan"))


def test_divergence_error_after_max_rollbacks_says_what_when_and_what_to_try() -> None:
    model, opt = _tiny()
    guard = Guard(model, opt, max_rollbacks=2)
    guard.check(1.0)
    guard.check(float("nan"))  # a skip: not counted
    guard.check(float("inf"))
    guard.check(float("nan"))
    with pytest.raises(lrkit.DivergenceError) as info:
        guard.check(float("nan"))
    message = str(info.value)
    assert "step 4" in message and "nonfinite_loss" in message and "2 rollbacks" in message and "(skip)" in message
    assert "lower lr" in message and "clip" in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"snapshot_every": 0},
        {"cut": 0.0},
        {"cut": 1.5},
        {"spike": -1.0},
        {"max_rollbacks": -1},
        {"window": 5},
        {"snapshot_every": 2.5},
        {"repeat_window": 0},
        {"repeat_window": 1.5},
    ],
)
def test_bad_arguments_raise_control_error(kwargs: dict[str, Any]) -> None:
    model, opt = _tiny()
    with pytest.raises(lrkit.ControlError, match="Guard: parameter"):
        Guard(model, opt, **kwargs)


def test_bad_objects_and_losses_raise_control_error() -> None:
    model, opt = _tiny()
    with pytest.raises(lrkit.ControlError, match="optimizer"):
        Guard(model, "sgd")  # type: ignore[arg-type]
    with pytest.raises(lrkit.ControlError, match="scheduler"):
        Guard(model, opt, scheduler=42)
    with pytest.raises(lrkit.ControlError, match="loss"):
        Guard(model, opt).check(torch.ones(3))
    with pytest.raises(lrkit.ControlError, match="loss"):
        Guard(model, opt).check("0.5")  # type: ignore[arg-type]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_rollback_keeps_tensors_on_the_model_device(device: str) -> None:
    model = torch.nn.Linear(2, 1).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    guard = Guard(model, opt, snapshot_every=2)
    for _ in range(3):
        opt.zero_grad()
        loss = model(torch.ones(3, 2, device=device)).pow(2).mean()
        loss.backward()
        assert not guard.check(loss, grads=True)
        opt.step()
    assert guard.check(torch.tensor(float("nan"), device=device))
    assert all(p.device.type == device for p in model.parameters())
    assert all(v.device.type == device for s in opt.state.values() for k, v in s.items() if k != "step")


def test_gradient_check_of_a_large_model_sees_a_single_nan() -> None:
    model = torch.nn.Linear(1000, 1100)  # over a million gradient entries: checked tensor by tensor
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(model, opt)
    model(torch.ones(1, 1000)).sum().backward()
    assert not guard.check(1.0, grads=True)
    model.weight.grad[5, 7] = float("nan")  # type: ignore[index]
    assert guard.check(1.0, grads=True) and guard.incidents[0].kind == "nonfinite_grad"
    assert model.weight.grad is None  # the poisoned gradients are dropped with the batch
