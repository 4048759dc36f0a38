"""PBT's exported schedule replayed from scratch, against the PBT winner and against `search_lr`'s best, same budget.

For each problem: `lrkit.lab.pbt` (SGD momentum 0.9, lr mutated) trains `population` members for `epochs`;
its winner's lr history is exported as a spec (`PBTResult.spec`) and replayed from scratch on fresh seeds
(`lrkit.lab.pbt_member.replay`: a new run, since PBT copied weights). `lrkit.search_lr` gets the same budget
(`population` candidates x `epochs`: half constant, half cosine, lrs on a log grid over PBT's bounds) and its
winner is replayed on the same fresh seeds. Every number is the final test loss (and accuracy) of the problem's
test split, the metric both methods judged by.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/pbt_replay.py  (writes the table to stdout; about 10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

import lrkit
from lrkit.engine import ray_session
from lrkit.errors import LabError
from lrkit.lab.pbt_member import MemberRun, Recipe, replay
from lrkit.lab.pbt_tune import pbt
from lrkit.lab.problems import get_problem
from lrkit.search.result import SearchResult

OPTIMIZER = "sgd(momentum=0.9)"
FRESH_SEEDS = (1000, 1001, 1002)  # not among PBT's member seeds (0 .. population-1) nor search_lr's inits
SETUPS = {"blobs": {"epochs": 30, "interval": 5}, "digits": {"epochs": 15, "interval": 3}}


def search(problem: str, population: int, epochs: int, bounds: tuple[float, float]) -> SearchResult:
    """`search_lr` with PBT's budget: `population` candidates (constant and cosine, log grid over PBT's lr bounds)."""
    from torch.utils.data import DataLoader, TensorDataset

    p = get_problem(problem)
    lrs = np.geomspace(bounds[0], bounds[1], population // 2).tolist()
    train = DataLoader(
        TensorDataset(p.x_train, p.y_train), batch_size=p.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    from lrkit.torch.search import search_lr

    return search_lr(p.make_model, OPTIMIZER, p.loss, train, (p.x_test, p.y_test), epochs=epochs, lrs=lrs,
                           shapes=("constant", "cosine"), seed=0, progress=False)  # fmt: skip


def plain(problem: str, schedule: lrkit.Schedule, epochs: int) -> list[tuple[float, float]]:
    """(test loss, accuracy) after `epochs` of the plain run of `schedule`, for each fresh seed."""
    p, out = get_problem(problem), []
    for seed in FRESH_SEEDS:
        run = MemberRun(p, Recipe(lrkit.Optim.parse(OPTIMIZER)), {"lr": schedule}, seed)
        for _ in range(epochs):
            run.train_epoch()
        out.append((run.losses[-1], run.accuracies[-1]))
    return out


def mean_std(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return f"{len(values) - len(finite)} diverged"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def one_problem(problem: str, population: int) -> dict[str, Any]:
    setup = SETUPS[problem]
    start = time.perf_counter()
    result = pbt(
        problem, population=population, epochs=setup["epochs"], interval=setup["interval"], optimizer=OPTIMIZER, num_cpus=2 / population
    )  # all trials at once on the 2 cores: none waits paused for a free CPU
    pbt_s = time.perf_counter() - start
    print(f"{problem}: PBT {pbt_s:.0f} s, spec {result.spec}", file=sys.stderr, flush=True)
    replays = [(r.losses[-1], r.accuracies[-1]) for r in replay(result, FRESH_SEEDS)]
    bounds = result.bounds["lr"]
    start = time.perf_counter()
    found = search(problem, population, setup["epochs"], bounds)
    search_s = time.perf_counter() - start
    print(f"{problem}: search_lr {search_s:.0f} s", file=sys.stderr, flush=True)
    searched = plain(problem, found.schedule, setup["epochs"])
    winner_loss = float(found.val_loss[found.winner, :, -1].mean())
    return {"problem": problem, "pbt": result, "pbt_s": pbt_s, "replays": replays, "search": found, "search_s": search_s,
            "search_loss": winner_loss, "searched": searched}  # fmt: skip


def report(rows: list[dict[str, Any]], population: int) -> str:
    lines = [
        f"population / candidates: {population}; optimizer {OPTIMIZER}; fresh seeds {list(FRESH_SEEDS)}; final test loss (accuracy)",
        "",
        "| problem | epochs | PBT winner (its run) | PBT spec replayed, fresh seeds | search_lr best (its run) "
        "| search_lr winner replayed, fresh seeds | PBT wall s | search wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res, best = r["pbt"], r["pbt"].best
        lines.append(
            f"| {r['problem']} | {res.epochs} | {best.score:.4f} | {mean_std([x[0] for x in r['replays']])} "
            f"({mean_std([x[1] for x in r['replays']])}) | {r['search_loss']:.4f} | {mean_std([x[0] for x in r['searched']])} "
            f"({mean_std([x[1] for x in r['searched']])}) | {r['pbt_s']:.0f} | {r['search_s']:.0f} |"
        )
    lines.append("")
    for r in rows:
        lines.append(
            f"- {r['problem']}: PBT's spec `{r['pbt'].spec}`; search_lr's winner `{r['search'].candidates[r['search'].winner]['spec']}`"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--problems", default="blobs,digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    with ray_session("bench", None, LabError, num_cpus=2):
        rows = [one_problem(p, args.population) for p in args.problems.split(",")]
    print(report(rows, args.population))
    print(f"\nwhole comparison: {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
