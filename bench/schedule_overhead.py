"""What lrkit's schedules cost: Scheduler.step() beside torch's OneCycleLR.step(), and values() over 1M steps.

Both schedulers drive their own SGD optimizer through the same one-cycle schedule; blocks of steps alternate
between them so that both see the same machine load, and only the `step()` calls are timed.

    .venv/bin/python bench/schedule_overhead.py [--steps 100000] [--values-steps 1000000]

Targets (issue 3): lrkit's step costs no more than torch's; values() over 1M steps under 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

import lrkit

PEAK = 0.1
BLOCK = 1000


def timed_steps(opt: torch.optim.Optimizer, sched: LRScheduler, n: int) -> int:
    """Nanoseconds spent in `sched.step()` over `n` optimizer updates."""
    total = 0
    clock = time.perf_counter_ns
    for _ in range(n):
        opt.step()
        t0 = clock()
        sched.step()
        total += clock() - t0
    return total


def step_costs(steps: int) -> tuple[float, float]:
    """Median ns per step() of lrkit's Scheduler and torch's OneCycleLR, over alternating blocks."""
    ours_opt, theirs_opt = (lrkit.Optim("sgd").to_torch([torch.nn.Parameter(torch.zeros(8))], lr=PEAK) for _ in range(2))
    ours = lrkit.Scheduler(ours_opt, lr=lrkit.one_cycle(peak=PEAK, total_steps=steps))
    theirs = OneCycleLR(theirs_opt, max_lr=PEAK, total_steps=steps, cycle_momentum=False)
    per_block_ours, per_block_theirs = [], []
    for start in range(0, steps - 1, BLOCK):
        n = min(BLOCK, steps - 1 - start)  # torch's OneCycleLR raises past total_steps
        per_block_ours.append(timed_steps(ours_opt, ours, n) / n)
        per_block_theirs.append(timed_steps(theirs_opt, theirs, n) / n)
    last_ours, last_theirs = ours.get_last_lr()[0], theirs.get_last_lr()[0]
    if abs(last_ours - last_theirs) > 1e-12 * abs(last_theirs):  # same schedule, or the comparison means nothing
        raise SystemExit(f"the two schedulers disagree at step {steps - 1}: {last_ours} vs {last_theirs}")
    return statistics.median(per_block_ours), statistics.median(per_block_theirs)


def values_ms(make: Callable[[int], lrkit.Schedule], steps: int, repeats: int = 7) -> tuple[float, float, float]:
    """Best and median wall time, and best CPU time of this process, of `values(range(steps))`, in ms.

    On a shared machine the CPU time is the fairer figure: it leaves out the time other processes held the core.
    """
    schedule = make(steps)
    t = np.arange(steps)
    schedule.values(t)  # warm-up: first-touch page faults and numpy's dispatch
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        schedule.values(t)
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return min(wall), statistics.median(wall), min(cpu)


VALUES = {
    "one_cycle": lambda n: lrkit.one_cycle(peak=PEAK, total_steps=n),
    "warmup(cosine)": lambda n: lrkit.warmup(lrkit.cosine(start=PEAK, steps=n - n // 10), steps=n // 10),
    "wsd(1-sqrt)": lambda n: lrkit.wsd(peak=PEAK, total_steps=n, warmup_steps=n // 100, decay_steps=n // 5, decay="1-sqrt"),
    "sgdr(cycle_mult=2)": lambda n: lrkit.sgdr(start=PEAK, first_cycle=1000, cycle_mult=2),
    "cyclic(triangular2)": lambda n: lrkit.cyclic(low=PEAK / 10, high=PEAK, half_cycle=2000, mode="triangular2"),
    "cyclic(exp_range)": lambda n: lrkit.cyclic(low=PEAK / 10, high=PEAK, half_cycle=2000, mode="exp_range", gamma=0.99999),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="optimizer steps for the step() comparison")
    parser.add_argument("--values-steps", type=int, default=1_000_000, help="steps for values()")
    args = parser.parse_args()
    torch.set_num_threads(1)

    ours, theirs = step_costs(args.steps)
    ratio = ours / theirs
    print(f"step() over {args.steps} one-cycle steps (median of {BLOCK}-step blocks, alternating):")
    print(f"  lrkit.Scheduler  {ours / 1e3:8.2f} us/step")
    print(f"  torch OneCycleLR {theirs / 1e3:8.2f} us/step")
    print(f"  ratio lrkit/torch {ratio:.2f}  (target <= 1.00: {'met' if ratio <= 1.0 else 'NOT met'})")

    print(f"values() over {args.values_steps} steps (wall best / median of 7, CPU best):")
    for name, make in VALUES.items():
        best, median, cpu = values_ms(make, args.values_steps)
        verdict = f"wall {'met' if best < 50 else 'NOT met'}, CPU {'met' if cpu < 50 else 'NOT met'}"
        print(f"  {name:20s} {best:7.1f} / {median:7.1f} ms, CPU {cpu:7.1f} ms  (target < 50 ms: {verdict})")


if __name__ == "__main__":
    main()
