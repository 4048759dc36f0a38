"""The population trainer against the plain per-run PyTorch loop, on the blobs `lr` study (8 lrs x 10 seeds, 200 epochs).

The plain loop is what a tutorial writes: one model, one torch.optim.SGD, a DataLoader with minibatches of 32
(shuffled), and the train/test loss and accuracy recorded after every epoch. A second plain loop slices
minibatches by index instead of a DataLoader (the fastest honest single-run loop). Plain runs are slow, so
only `--plain-runs` of the 80 are timed and the per-run time is extrapolated to 80 (the output says so).
Scaling: the same study with 8 members (one seed) against 800 members (100 seeds), same code path and settings,
alternated `--repeats` times (the fastest run of each size counts).

    .venv/bin/python bench/study_speed.py [--epochs 200] [--plain-runs 2] [--big 800] [--threads N]

Every run uses torch's intra-op threads: its default (all cores, what a user gets) unless `--threads` (or
OMP_NUM_THREADS) says otherwise; the count is printed. Small populations run op by op on one core either way
(their tensors are below torch's parallel grain); a large one spreads its batched products over the cores.
Targets (issue 6): population >= 30x faster than the tutorial loop; 800 members cost < 10x what 8 members cost.
Both wall-clock and process CPU time are printed: on a shared machine CPU time is the steadier of the two
(with several threads it adds up the cores, so compare wall times then).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lrkit.lab.population import Member, train
from lrkit.lab.problems import Problem, get_problem
from lrkit.optim import Optim
from lrkit.torch.data import MinibatchOrder

LRS = tuple(10.0**-k for k in range(8))


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def evaluate(problem: Problem, model: torch.nn.Module) -> tuple[float, float, float, float]:
    with torch.no_grad():
        out_tr, out_te = model(problem.x_train), model(problem.x_test)
        return (
            float(F.cross_entropy(out_tr, problem.y_train)), float((out_tr.argmax(1) == problem.y_train).float().mean()),
            float(F.cross_entropy(out_te, problem.y_test)), float((out_te.argmax(1) == problem.y_test).float().mean()),
        )  # fmt: skip


def tutorial_run(problem: Problem, lr: float, seed: int, epochs: int) -> None:
    """The per-run loop a tutorial writes, with a DataLoader (plain torch on purpose: it is what the population is measured against)."""
    torch.manual_seed(seed)
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(problem.x_train, problem.y_train), batch_size=32, shuffle=True)
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        evaluate(problem, model)


def tight_run(problem: Problem, lr: float, seed: int, epochs: int) -> None:
    """The same loop with minibatches sliced by index in lrkit's one order (no DataLoader)."""
    torch.manual_seed(seed)
    model = problem.make_model()
    opt = Optim("sgd").to_torch(model.parameters(), lr=lr)
    order = MinibatchOrder(len(problem.x_train), seed)
    for _ in range(epochs):
        for idx in order.epoch(32):
            opt.zero_grad()
            F.cross_entropy(model(problem.x_train[idx]), problem.y_train[idx]).backward()
            opt.step()
        evaluate(problem, model)


def population(problem: Problem, seeds: int, epochs: int) -> Callable[[], object]:
    members = [Member(lr=lr, seed=s) for lr in LRS for s in range(seeds)]
    return lambda: train(problem, members, epochs=epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--plain-runs", type=int, default=2, help="plain runs actually timed (of len(LRS) * seeds; 0 skips them)")
    parser.add_argument("--big", type=int, default=800, help="members of the scaling run (0 skips it)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size in the scaling comparison (the fastest counts)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads for every run (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problem = get_problem("blobs")
    runs = len(LRS) * args.seeds
    steps = args.epochs * math.ceil(len(problem.x_train) / problem.batch_size)
    train(problem, [Member(lr=0.01)], epochs=1)  # warm up torch and the data before timing
    print(f"blobs lr study: {len(LRS)} lrs x {args.seeds} seeds = {runs} runs, {args.epochs} epochs ({steps} steps per run), "
          f"torch threads: {torch.get_num_threads()}")  # fmt: skip

    pop = timed(population(problem, args.seeds, args.epochs))
    print(f"population, {runs} members in one batched run: wall {pop[0]:.2f} s, cpu {pop[1]:.2f} s, "
          f"{pop[0] / (runs * steps) * 1e6:.2f} us per member-step (wall)")  # fmt: skip
    loops = (("tutorial loop (DataLoader)", tutorial_run), ("plain loop (index slicing)", tight_run)) if args.plain_runs else ()
    for name, loop in loops:
        times = [timed(lambda i=i, loop=loop: loop(problem, LRS[i % len(LRS)], i, args.epochs)) for i in range(args.plain_runs)]
        wall, cpu = (sum(t[k] for t in times) / len(times) for k in (0, 1))
        print(f"{name}: {wall:.2f} s per run (wall, cpu {cpu:.2f} s), {wall / steps * 1e6:.1f} us per step; "
              f"timed {args.plain_runs} of {runs} runs, extrapolated to {runs}: {wall * runs:.1f} s")  # fmt: skip
        print(f"  speed-up of the population: {wall * runs / pop[0]:.1f}x wall, {cpu * runs / pop[1]:.1f}x cpu   (target >= 30x)")
    if args.big:
        scaling(problem, args.big, args.epochs, steps, args.repeats)


def scaling(problem: Problem, big: int, epochs: int, steps: int, repeats: int = 2) -> None:
    """The same study with 8 members and with `big` members, alternated `repeats` times: the fastest run of each counts."""
    runs: dict[int, list[tuple[float, float]]] = {1: [], big // len(LRS): []}
    for _ in range(repeats):
        for seeds, times in runs.items():  # alternating, so a slow spell of the machine hits both sizes alike
            times.append(timed(population(problem, seeds, epochs)))
    small, large = (min(times) for times in runs.values())
    for name, members, (wall, cpu) in ((f"{len(LRS)} members", len(LRS), small), (f"{big} members", big, large)):
        print(f"scaling, {name}: wall {wall:.2f} s, cpu {cpu:.2f} s, {wall / (members * steps) * 1e6:.2f} us per member-step "
              f"(wall, best of {repeats})")  # fmt: skip
    print(f"  {big} members cost {large[0] / small[0]:.1f}x wall ({large[1] / small[1]:.1f}x cpu) what {len(LRS)} cost, "
          f"for {big // len(LRS)}x the members   (target < 10x)")  # fmt: skip


if __name__ == "__main__":
    main()
