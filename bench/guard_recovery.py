"""What lrkit.Guard costs a run hit by glitches: the final loss relative to the clean run.

The run of issue 12: X = randn(512, 10), W = randn(10, 1), Y = tanh(XW) + 0.1 noise
(generator seed 1); an MLP 10-32-1 (ReLU) after `torch.manual_seed(0)`; SGD at lr 0.1;
600 steps over batches of 32 in order; a default `lrkit.Guard(model, opt)`. The loss is
multiplied by NaN before `guard.check(loss)` every 50 steps (25, 75, ...), every 120
steps, or at 3 isolated steps 150 apart; a real divergence trains at lr 50. Targets:
within 1.5x of the clean run for the injected glitches; the real divergence ends in a
rollback with a cut lr or a clear `DivergenceError`.

    OMP_NUM_THREADS=1 .venv/bin/python bench/guard_recovery.py
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import torch

import lrkit

STEPS, BATCH, N = 600, 32, 512
CASES: dict[str, tuple[float, Collection[int]]] = {  # name: (lr, steps whose loss is multiplied by NaN)
    "clean": (0.1, ()),
    "NaN every 50": (0.1, range(25, STEPS, 50)),
    "NaN every 120": (0.1, range(60, STEPS, 120)),
    "NaN at 3 isolated steps": (0.1, (150, 300, 450)),
    "real divergence (lr 50)": (50.0, ()),
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a guarded run ended: its final full-data loss (None after a DivergenceError), lr and incidents."""

    final_loss: float | None
    lr: float
    incidents: list[lrkit.torch.guard.Incident]
    error: str | None


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """The issue's regression data: Y = tanh(XW) + 0.1 noise, generator seed 1."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 10, generator=g)
    w = torch.randn(10, 1, generator=g)
    return x, torch.tanh(x @ w) + 0.1 * torch.randn(N, 1, generator=g)


def train(lr: float = 0.1, nan_at: Collection[int] = (), steps: int = STEPS, **guard_args: Any) -> Outcome:
    """The issue's run under `lrkit.Guard(model, opt, **guard_args)`, the loss times NaN at the steps `nan_at`."""
    x, y = data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    guard = lrkit.Guard(model, opt, **guard_args)
    try:
        for step in range(steps):
            i = step * BATCH % N
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i : i + BATCH]), y[i : i + BATCH])
            if guard.check(loss * float("nan") if step in nan_at else loss):
                continue
            loss.backward()
            opt.step()
    except lrkit.DivergenceError as error:
        return Outcome(None, float(opt.param_groups[0]["lr"]), guard.incidents, str(error))
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(model(x), y))
    return Outcome(final, float(opt.param_groups[0]["lr"]), guard.incidents, None)


def main() -> None:
    torch.set_num_threads(1)
    clean = train()
    assert clean.final_loss is not None
    print(f"{'case':26} {'final loss':>10} {'x clean':>8} {'lr':>8} {'skips':>6} {'restores':>8} {'rollbacks':>9}  outcome")
    for name, (lr, nan_at) in CASES.items():
        out = train(lr, nan_at)
        counts = {a: sum(i.action == a for i in out.incidents) for a in ("skip", "restore", "rollback")}
        ratio = f"{out.final_loss / clean.final_loss:8.3f}" if out.final_loss is not None else f"{'-':>8}"
        loss = f"{out.final_loss:10.4g}" if out.final_loss is not None else f"{'-':>10}"
        outcome = "DivergenceError" if out.error else "finished"
        print(f"{name:26} {loss} {ratio} {out.lr:8.3g} {counts['skip']:6} {counts['restore']:8} {counts['rollback']:9}  {outcome}")


if __name__ == "__main__":
    main()
