"""`lrkit search`: train every candidate lr x schedule shape at once on a built-in (or your own) problem, pick the winner.

Writes the plot, the table (CSV), the JSON and the winning spec; the arguments are checked before
any training (and before `--out` is made), so a mistake is one line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lrkit import validate
from lrkit.cli._options import DEVICE, OUT_DIR, ray_options
from lrkit.errors import FinderError
from lrkit.lab.problems import PROBLEMS
from lrkit.optim import HELP, Optim, split_specs
from lrkit.search.grid import SHAPES
from lrkit.search.result import BUDGETS

if TYPE_CHECKING:
    from lrkit.lab.problems import Problem

CMD = "lrkit search"
FILES = ("search.png", "search.csv", "search.json", "schedule.txt")


def _numbers(param: str, check: Callable[..., float]) -> Callable[[Any, Any, str | None], list[float] | None]:
    """A click callback reading a comma-separated list of numbers, each checked by `check` (a `lrkit.validate` rule)."""

    def read(_ctx: Any, _param: Any, text: str | None) -> list[float] | None:
        if text is None:
            return None
        items = split_specs(text)
        if not items:
            validate.fail(CMD, param, "must be a comma-separated list of numbers", text, FinderError)
        values = []
        for item in items:
            try:
                value = float(item)
            except ValueError:
                validate.fail(CMD, param, "must be a comma-separated list of numbers", item, FinderError)
            values.append(check(CMD, param, value, FinderError))
        return values

    return read


def _shapes(_ctx: Any, _param: Any, text: str) -> list[str]:
    items = split_specs(text)
    if not items:
        validate.fail(CMD, "--shapes", f"must name at least one shape ({', '.join(SHAPES)})", text, FinderError)
    return [validate.choice(CMD, "--shapes", item, FinderError, SHAPES) for item in items]


@click.command()
@click.option(
    "--problem", default="blobs", show_default=True,
    help=f"A built-in problem ({', '.join(PROBLEMS)}) or pkg.module:function (a def of your own module; see get_problem).",
)  # fmt: skip
@click.option(
    "--optimizer", default="sgd(momentum=0.9)", show_default=True, help=f"The optimizer spec: {HELP}.", is_eager=True,
    callback=lambda _ctx, _param, text: Optim.of(text, CMD, "--optimizer"),
)  # fmt: skip
@click.option("--shapes", default="constant", show_default=True, is_eager=True, callback=_shapes,
              help=f"Comma-separated schedule shapes, each sized to the budget ({', '.join(SHAPES)}).")  # fmt: skip
@click.option("--lrs", default=None, is_eager=True, callback=_numbers("--lrs", validate.positive),
              help="Comma-separated peak lrs (default: the search's log grid over 1e-6 .. 10).")  # fmt: skip
@click.option("--weight-decays", default=None, is_eager=True, callback=_numbers("--weight-decays", validate.non_negative),
              help="Comma-separated weight decays, a second searched dimension (default: the optimizer's own).")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs of every candidate (default: the problem's).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Inits per candidate; the mean judges.")
@click.option("--budget", type=click.Choice(BUDGETS), default="full", show_default=True,
              help="full: every candidate trains all epochs; halving: successive halving drops the worse part at rungs.")  # fmt: skip
@click.option("--metric", type=click.Choice(["accuracy", "none"]), default="none", show_default=True,
              help="Judge by this validation metric (higher is better; classification only) instead of the loss, as search_lr's metric=.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seeds the inits (seed, seed+1, ...), the data order and the problem's data (0 .. 2**63 - 1).")  # fmt: skip
@click.option("--device", type=DEVICE, default=None, help="The torch device to train on (cpu, cuda, cuda:N, mps; default: search_lr's).")
@ray_options("2 shards per worker, at most what one worker's memory holds")
@click.option("--out", type=OUT_DIR, default=Path("lrkit-search"), show_default=True, help="Output folder (made if missing).")
def search(problem: str, optimizer: Optim, shapes: list[str], lrs: list[float] | None, weight_decays: list[float] | None,
           epochs: int | None, seeds: int, budget: str, metric: str, seed: int, device: str | None, engine: str,
           address: str | None, shard_size: int | None, cpus_per_shard: int | None, out: Path) -> None:  # fmt: skip
    """Search the lr (and schedule shape) on the --problem by training every candidate together; write OUT/search.png,
    OUT/search.csv, OUT/search.json and OUT/schedule.txt (the winning schedule's spec, for lrkit.Scheduler).

    Example: lrkit search --problem digits --optimizer adam --shapes constant,cosine --out runs/digits

    On a Ray cluster: lrkit search --problem digits --engine ray --address auto --out runs/digits
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lrkit.lab.problems import get_problem

    _ray_only(engine, {"--address": address, "--shard-size": shard_size, "--cpus-per-shard": cpus_per_shard})
    p = get_problem(problem, seed=seed)
    judge_by = _metric(metric, p)  # checked before the engine loads, like every other argument

    from lrkit.torch.search import search_lr

    # the loader's own generator: the same command gives the same minibatch order, whatever ran before
    train = DataLoader(TensorDataset(p.x_train, p.y_train), batch_size=p.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))  # fmt: skip
    result = search_lr(p.make_model, optimizer, p.loss, train, (p.x_test, p.y_test), epochs=epochs or p.epochs, lrs=lrs,
                       shapes=tuple(shapes), weight_decays=weight_decays, seeds=seeds, metric=judge_by, budget=budget,
                       seed=seed, device=device, progress=True, engine=engine, address=address, shard_size=shard_size,
                       num_cpus=cpus_per_shard)  # fmt: skip
    result.plot().savefig(out / FILES[0], dpi=120)
    result.to_csv(out / FILES[1])
    result.to_json(out / FILES[2])
    (out / FILES[3]).write_text(result.candidates[result.winner]["spec"] + "\n")
    click.echo(result.summary())
    click.echo(f"wrote {', '.join(FILES)} in {out}")


def _ray_only(engine: str, given: dict[str, Any]) -> None:
    """The Ray settings need `--engine ray` (checked before any work, as every other argument)."""
    for flag, value in given.items():
        if value is not None and engine != "ray":
            what = "joins a Ray cluster" if flag == "--address" else "cuts a population into Ray tasks"
            validate.fail(CMD, flag, f"{what}, so it needs --engine ray", value, FinderError)


def _metric(name: str, problem: Problem) -> str | None:
    """The metric to judge by (None: the loss, as `search_lr`'s default); accuracy needs a classification problem."""
    if name == "accuracy" and problem.task != "classification":
        validate.fail(CMD, "--metric", f"must be 'none' for the regression problem {problem.name!r} (accuracy needs classes)", name,
                      FinderError)  # fmt: skip
    return None if name == "none" else name
