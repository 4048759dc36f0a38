"""The classic numbers practitioners know, as tests: Keras' legacy SGD `decay` (lr0 / (1 + decay * t))."""

from __future__ import annotations

import pytest

import lrkit

KERAS_EPOCHS = [0.1, 0.09990010, 0.09980040, 0.09970090, 0.09960159]


def test_inverse_time_per_epoch_gives_keras_first_five_epochs() -> None:
    s = lrkit.inverse_time(start=0.1, decay=0.001)
    assert [round(s(epoch), 8) for epoch in range(5)] == KERAS_EPOCHS
    assert [s(epoch) for epoch in range(5)] == pytest.approx([0.1 / (1 + 0.001 * t) for t in range(5)], rel=1e-15)


def test_the_same_numbers_held_for_every_step_of_an_epoch() -> None:
    s = lrkit.per_epoch(lrkit.inverse_time(start=0.1, decay=0.001), steps_per_epoch=16)
    by_epoch = s.values(range(5 * 16)).reshape(5, 16)
    assert (by_epoch == by_epoch[:, :1]).all()
    assert [round(float(v), 8) for v in by_epoch[:, 0]] == KERAS_EPOCHS


def test_decay_per_update_over_200_epochs_of_16_updates_ends_near_0_0076() -> None:
    s = lrkit.inverse_time(start=0.01, decay=1e-4)
    updates = 200 * 16
    assert s(updates) == pytest.approx(0.01 / (1 + 1e-4 * 3200), rel=1e-12)  # = 0.0075757...
    assert abs(s(updates) - 0.0076) < 1e-4 and abs(s(updates - 1) - 0.0076) < 1e-4


def test_a_real_optimizer_ends_at_the_same_number() -> None:
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.01)
    sched = lrkit.Scheduler(opt, lr=lrkit.inverse_time(start=0.01, decay=1e-4))
    for _ in range(200):
        for _ in range(16):
            w.grad = torch.ones(1)
            opt.step()
            sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.0075757575757, rel=1e-10)
    assert abs(sched.get_last_lr()[0] - 0.0076) < 1e-4
