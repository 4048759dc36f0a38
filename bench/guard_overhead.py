"""Overhead of lrkit.Guard at its default interval, measured side by side in one run.

For each model the same training steps run without a guard, with `guard.check(loss)`
and with `guard.check(loss, grads=True)`, interleaved over several rounds (the
minimum CPU time per variant is kept, so load from other processes cancels out).
Prints seconds per 1000 steps and the overhead ratio; the target is < 5%.

    OMP_NUM_THREADS=1 .venv/bin/python bench/guard_overhead.py [--steps 600] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch

import lrkit
from lrkit.lab.problems import get_problem
from lrkit.torch.data import MinibatchOrder

Setup = Callable[[], tuple[torch.nn.Module, torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]]]


def blobs() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]]:
    """The classic blobs MLP (2-50-3, batch 32)."""
    problem = get_problem("blobs")
    return problem.make_model(), problem.x_train, problem.y_train, problem.loss


def larger() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, Callable[..., torch.Tensor]]:
    """A 1.9M-parameter MLP (784-1024-1024-10, batch 32) on random data."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)
    )
    x, y = torch.randn(2048, 784, generator=g), torch.randint(0, 10, (2048,), generator=g)
    return model, x, y, torch.nn.functional.cross_entropy


def run(setup: Setup, steps: int, variant: str) -> float:
    torch.manual_seed(0)
    model, x, y, loss_fn = setup()
    opt = lrkit.Optim("sgd", momentum=0.9).to_torch(model.parameters(), lr=0.01)
    guard = lrkit.Guard(model, opt) if variant != "plain" else None
    order = MinibatchOrder(len(x), seed=1)  # lrkit's one minibatch order, epoch after epoch, for `steps` steps
    batches = list(itertools.islice(itertools.chain.from_iterable(order.epoch(32) for _ in itertools.count()), steps))
    start = time.process_time()  # CPU time of this process: less sensitive to other processes than wall time
    for idx in batches:
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        if guard is not None and variant == "loss" and guard.check(loss):
            continue
        loss.backward()
        if guard is not None and variant == "grads" and guard.check(loss, grads=True):
            continue
        opt.step()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved repetitions; the fastest counts")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.steps} steps x {args.rounds} rounds, snapshot_every=100")
    print(f"{'model':8} {'plain s/1k':>11} {'check(loss)':>12} {'grads=True':>11} {'overhead':>9} {'(grads)':>8}")
    for name, setup in (("blobs", blobs), ("larger", larger)):
        times: dict[str, list[float]] = {"plain": [], "loss": [], "grads": []}
        for _ in range(args.rounds):
            for variant in times:
                times[variant].append(run(setup, args.steps, variant))
        best = {k: min(v) * 1000 / args.steps for k, v in times.items()}
        over, over_grads = best["loss"] / best["plain"] - 1, best["grads"] / best["plain"] - 1
        print(f"{name:8} {best['plain']:11.3f} {best['loss']:12.3f} {best['grads']:11.3f} {over:9.1%} {over_grads:8.1%}")


if __name__ == "__main__":
    main()
