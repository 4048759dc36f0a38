"""Figure for the schedules guide: the classic shapes over 1000 steps, and warmup + cosine next to its torch preset."""

from _figure import save

import lrkit
from lrkit.presets import torch as presets

shapes = [lrkit.step_decay(start=0.1, factor=0.5, every=250), lrkit.cosine(start=0.1, steps=1000),
          lrkit.one_cycle(peak=0.1, total_steps=1000), lrkit.cyclic(low=0.01, high=0.1, half_cycle=125),
          lrkit.sgdr(start=0.1, first_cycle=143, cycle_mult=2.0),
          lrkit.wsd(peak=0.1, total_steps=1000, warmup_steps=50, decay_steps=200)]  # fmt: skip
labels = ["step_decay", "cosine", "one_cycle", "cyclic", "sgdr", "wsd"]
save(lrkit.plot_schedule(shapes, 1000, labels=labels, title="lrkit schedules"), "schedules.png")
ours = lrkit.warmup(lrkit.cosine(start=0.1, steps=900), steps=100)
theirs = presets.CosineAnnealingLR(0.1, T_max=600)
labels = ["warmup + cosine", "torch CosineAnnealingLR(T_max=600), rising again"]
save(lrkit.plot_schedule([ours, theirs], 1000, labels=labels), "presets.png")
