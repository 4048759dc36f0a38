"""Figure for the control guide: a plateau on top of warmup + cosine, driven by a validation loss that stalls."""

import matplotlib.pyplot as plt
import torch
from _figure import save

import lrkit

opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
sched = lrkit.Scheduler(opt, lr=lrkit.warmup(lrkit.cosine(start=0.1, steps=900), steps=100), plateau=lrkit.Plateau(patience=2, factor=0.5))
lrs = []
for step in range(1000):
    lrs.append(sched.get_last_lr()[0])
    opt.step()
    sched.step()
    if step % 50 == 49:  # an "epoch" of 50 steps; the validation loss stops improving after epoch 8
        sched.observe(max(1.0 - 0.1 * (step // 50), 0.2))
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(lrkit.warmup(lrkit.cosine(start=0.1, steps=900), steps=100).values(range(1000)), "--", label="warmup + cosine")
ax.plot(lrs, label="... x plateau scale (patience 2, factor 0.5)")
ax.set(xlabel="optimizer step", ylabel="lr")
ax.legend()
save(fig, "plateau.png")
