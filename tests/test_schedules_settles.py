"""lrkit.schedules.base.settles: the step from which a schedule holds its last value, read from its durations."""

from __future__ import annotations

import numpy as np
import pytest

import lrkit
from lrkit.presets import keras as keras_presets
from lrkit.presets import torch as torch_presets
from lrkit.schedules.base import settles

SETTLING = {
    "constant": (lrkit.constant(0.1), 0),
    "linear": (lrkit.linear(start=0.1, end=0.0, steps=700), 700),
    "polynomial": (lrkit.polynomial(start=0.1, end=1e-3, steps=900, power=2.0), 900),
    "cosine": (lrkit.cosine(start=0.1, steps=1200, power=2.0), 1200),
    "multistep": (lrkit.multistep(start=0.1, milestones=[100, 800], factor=0.1), 800),
    "piecewise": (lrkit.piecewise(boundaries=[10, 500], values=[0.3, 0.2, 0.1]), 500),
    "one_cycle": (lrkit.one_cycle(peak=0.3, total_steps=1500), 1499),
    "wsd": (lrkit.wsd(peak=0.1, total_steps=2000, warmup_steps=100, decay_steps=400, decay="cosine", cycles=1.5), 2000),
    "warmup": (lrkit.warmup(lrkit.cosine(start=0.1, steps=900), steps=100), 1000),
    "join": (lrkit.join([lrkit.linear(0.0, 0.1, 50), lrkit.linear(0.1, 0.0, 400)], boundaries=[50]), 450),
    "clip": (lrkit.clip(lrkit.linear(0.1, 0.0, 300), low=0.02), 300),
    "scale": (0.5 * lrkit.linear(0.1, 0.0, 300), 300),
    "product": (lrkit.linear(1.0, 0.5, 300) * lrkit.cosine(start=0.1, steps=600), 600),
    "per_epoch": (lrkit.per_epoch(lrkit.multistep(start=0.1, milestones=[3, 7], factor=0.1), steps_per_epoch=31), 217),
    "torch-LinearLR": (torch_presets.LinearLR(0.1, start_factor=0.1, total_iters=250), 250),
}
ENDLESS = {
    "exponential": lrkit.exponential(start=0.1, rate=0.999),
    "step_decay": lrkit.step_decay(start=0.1, factor=0.5, every=100_000),  # looks settled over any short window
    "cyclic": lrkit.cyclic(low=1e-3, high=0.1, half_cycle=250),
    "sgdr": lrkit.sgdr(start=0.1, first_cycle=300),
    "inverse_sqrt": lrkit.inverse_sqrt(peak=0.1, warmup_steps=100),
    # the peers' conventions that rise again past their end
    "cosine-cycles": lrkit.cosine(start=0.1, steps=500, cycles=0.5),
    "torch-CosineAnnealingLR": torch_presets.CosineAnnealingLR(0.1, T_max=500),
    "keras-PolynomialDecay-cycle": keras_presets.PolynomialDecay(0.1, decay_steps=500, cycle=True),
    "warmup-of-endless": lrkit.warmup(lrkit.exponential(start=0.1, rate=0.99), steps=10),
    "product-with-endless": lrkit.linear(1.0, 0.5, 300) * lrkit.exponential(start=0.1, rate=0.99),
}


@pytest.mark.parametrize("name", list(SETTLING))
def test_the_value_holds_from_the_settling_step_and_not_before(name: str) -> None:
    s, want = SETTLING[name]
    assert settles(s) == want
    tail = s.values(np.arange(want, want + 5000))
    assert np.all(tail == tail[0])
    if want and name != "clip":  # a clip may hold sooner than its schedule: settles reads durations, not values
        assert s(want - 1) != tail[0]  # the step is the first one that holds: the tables end as early as they can


@pytest.mark.parametrize("name", list(ENDLESS))
def test_a_schedule_that_never_settles_says_so(name: str) -> None:
    s = ENDLESS[name]
    assert settles(s) is None
    if name != "step_decay":
        assert len(np.unique(s.values(np.arange(3000, 6000)))) > 1


def test_parse_round_trips_keep_the_answer() -> None:
    for s, want in SETTLING.values():
        assert settles(lrkit.parse(repr(s))) == want
