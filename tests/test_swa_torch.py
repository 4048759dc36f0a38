"""`lrkit.torch.swa.WeightAveraging` against the hand-written `torch.optim.swa_utils` loop (SWALR, AveragedModel, update_bn)."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

import lrkit
from lrkit.schedules import Averaging
from lrkit.torch.swa import WeightAveraging

EPOCHS, BATCH, SWA_START = 12, 32, 40  # 8 minibatches an epoch: 96 steps; SWALR takes over in epoch 6


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    return x, (x[:, :3].sum(1, keepdim=True) > 0).float() + 0.1 * torch.randn(256, 1, generator=g)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def _batches(x: torch.Tensor, y: torch.Tensor, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
    return [(x[order[i : i + BATCH]], y[order[i : i + BATCH]]) for i in range(0, len(x), BATCH)]


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor) -> None:
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(xb), yb).backward()
    opt.step()


def _by_hand(plan: Averaging, anneal: str) -> tuple[torch.nn.Module, AveragedModel]:
    """The swa_utils recipe written out: SWALR takes over at SWA_START; weights enter after the plan's steps."""
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(plan.decay) if plan.kind == "ema" else None)
    swa: SWALR | None = None
    t = 0
    for epoch in range(EPOCHS):
        for xb, yb in _batches(x, y, epoch):
            _step(model, opt, xb, yb)
            if t >= plan.start and (t - plan.start) % plan.every == 0:
                averaged.update_parameters(model)
            t += 1
            if t == SWA_START:
                swa = SWALR(opt, swa_lr=0.01, anneal_epochs=20, anneal_strategy=anneal)  # type: ignore[arg-type]
            elif swa is not None:
                swa.step()
    update_bn([xb for xb, _ in _batches(x, y, 99)], averaged)
    return model, averaged


def _with_lrkit(plan: Averaging, anneal: str) -> tuple[torch.nn.Module, WeightAveraging]:
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    schedule = lrkit.schedules.swa_schedule(lrkit.constant(0.05), swa_start=SWA_START, swa_lr=0.01, anneal_steps=20, anneal=anneal)
    sched = lrkit.Scheduler(opt, lr=schedule)
    averaging = WeightAveraging(model, plan)
    for epoch in range(EPOCHS):
        for xb, yb in _batches(x, y, epoch):
            _step(model, opt, xb, yb)
            sched.step()
            averaging.update()
    averaging.finish(_batches(x, y, 99))  # (x, y) tuples: update_bn reads the first item
    return model, averaging


PLANS = {
    "swa-every-step": Averaging(start=SWA_START),
    "swa-per-epoch": Averaging(start=SWA_START + 7, every=8),
    "ema": Averaging(kind="ema", start=0, decay=0.98),
}


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_equals_the_hand_written_swa_utils_loop(plan: str, anneal: str) -> None:
    want_model, want = _by_hand(PLANS[plan], anneal)
    got_model, got = _with_lrkit(PLANS[plan], anneal)
    assert got.entries == int(want.n_averaged) > 1 and got.step == EPOCHS * 8
    for a, b in zip(got.module.state_dict().values(), want.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # the lrs agree to 1e-12, not bit for bit
    for a, b in zip(got_model.parameters(), want_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # the average differs from the last weights, and its BatchNorm statistics were recomputed (not the model's)
    assert not torch.allclose(got.module[0].weight, got_model[0].weight)
    assert not torch.allclose(got.module[1].running_mean, got_model[1].running_mean)
    got.module.eval()
    x, _ = _data()
    want.module.eval()
    torch.testing.assert_close(got.module(x), want.module(x), rtol=1e-5, atol=1e-6)


def test_update_reports_the_due_steps_and_state_round_trips() -> None:
    model = torch.nn.Linear(2, 1)
    averaging = WeightAveraging(model, Averaging(start=2, every=3))
    assert [averaging.update() for _ in range(9)] == [False, False, True, False, False, True, False, False, True]
    again = WeightAveraging(model, Averaging(start=2, every=3))
    again.load_state_dict(averaging.state_dict())
    assert again.step == 9 and again.entries == 3


def test_bad_input_is_named() -> None:
    with pytest.raises(lrkit.ScheduleError, match=r"^WeightAveraging: parameter 'model'"):
        WeightAveraging("net")  # type: ignore[arg-type]
    with pytest.raises(lrkit.ScheduleError, match=r"^WeightAveraging: parameter 'plan'"):
        WeightAveraging(torch.nn.Linear(2, 1), "swa")  # type: ignore[arg-type]
    averaging = WeightAveraging(torch.nn.Linear(2, 1), Averaging(start=10))
    averaging.update()
    with pytest.raises(lrkit.ScheduleError, match=r"^WeightAveraging.finish: parameter 'plan' averaged no weights in 1 steps"):
        averaging.finish([torch.ones(2, 2)])
