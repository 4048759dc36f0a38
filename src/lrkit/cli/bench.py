"""`lrkit bench`: lrkit's benchmarks; `lrkit bench finder` scores the range test's suggestions against a grid search,
`lrkit bench search` scores `search_lr`'s recommendations (and the peers' range tests) on held-out seeds,
`lrkit bench time-to-target` times every lr recipe to the tuned constant lr's best."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lrkit.cli._options import OUT_DIR
from lrkit.optim import split_specs


@click.group()
def bench() -> None:
    """Benchmarks that measure lrkit against grid searches and peer libraries."""


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def _given(problems: str | None, optimizers: str | None, seeds: str | None, grid_points: int | None, workers: int | None) -> dict[str, Any]:
    """The options both benchmarks share, read into their Config's fields (None: not given)."""
    specs = None if optimizers is None else tuple(split_specs(optimizers))  # specs keep their own commas
    given: dict[str, Any] = {"problems": _names(problems), "optimizers": specs, "grid_points": grid_points, "workers": workers}
    if seeds is not None:
        try:
            given["seeds"] = tuple(int(s) for s in _names(seeds) or ())
        except ValueError:
            raise click.BadParameter("must be comma-separated integers", param_hint="--seeds") from None
    return {k: v for k, v in given.items() if v is not None}


def _shared(seeds: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options both benchmarks take (`seeds` is the help text of --seeds)."""
    options = [
        click.option("--problems", default=None, help="Comma-separated built-in problems (default: all)."),
        click.option("--optimizers", default=None,
                     help="Comma-separated lrkit.Optim specs of the SGD or Adam families (default: 'sgd(momentum=0.9),adam')."),
        click.option("--seeds", default=None, help=seeds),
        click.option("--grid-points", type=int, default=None, help="Constant lrs in the grid, 2 to 200 (default: 12)."),
        click.option("--workers", type=int, default=None, help="Processes, one thread each, at most 4 per CPU core (default: 2)."),
        click.option("--no-tlf", is_flag=True, help="Skip the torch-lr-finder comparison."),
        click.option("--out", type=OUT_DIR, default=Path("lrkit-bench"), show_default=True, help="Output folder (checked first)."),
    ]  # fmt: skip

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def _run(name: str, run: Callable[..., dict[str, Any]], config: Any) -> dict[str, Any]:
    """Run a checked benchmark config under a progress bar, one tick per finished cell."""
    from rich.progress import Progress

    config.check()
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{name} benchmark", total=len(config.cells()))
        return run(config, progress=lambda rec: progress.advance(task))


@bench.command()
@click.option("--quick", is_flag=True, help="A smoke run: blobs, momentum SGD, one seed, a 4-point grid, a fifth of the budget.")
@_shared("Comma-separated seeds (default: 0,1,2).")
def finder(quick: bool, problems: str | None, optimizers: str | None, seeds: str | None, grid_points: int | None,
           workers: int | None, no_tlf: bool, out: Path) -> None:  # fmt: skip
    """Score every suggestion rule and torch-lr-finder: regret against the grid-best validation loss.

    Writes OUT/finder_bench.json (every cell), OUT/finder_bench.md (the table) and OUT/finder_bench.png.
    """
    from lrkit.bench import finder_report
    from lrkit.bench.finder import Config, run

    config = Config.quick() if quick else Config()
    config = dataclasses.replace(config, **_given(problems, optimizers, seeds, grid_points, workers), compare_tlf=not no_tlf)
    report = _run("finder", run, config)
    (out / "finder_bench.json").write_text(json.dumps(report, indent=1))
    text = finder_report.table(report)
    (out / "finder_bench.md").write_text(text + "\n")
    finder_report.figure(report).savefig(out / "finder_bench.png", dpi=120)
    click.echo(text)
    click.echo(f"wrote {out / 'finder_bench.json'}, {out / 'finder_bench.md'} and {out / 'finder_bench.png'}")


@bench.command()
@click.option("--quick", is_flag=True, help="A smoke run: blobs, momentum SGD, one held-out seed, a 4-point grid, a fifth of the budget.")
@_shared("Comma-separated held-out seeds the choices are judged on, not the search seed 0 (default: 100,101,102).")
@click.option("--no-lightning", is_flag=True, help="Skip the Lightning Tuner.lr_find comparison.")
def search(quick: bool, problems: str | None, optimizers: str | None, seeds: str | None, grid_points: int | None,
           workers: int | None, no_tlf: bool, out: Path, no_lightning: bool) -> None:  # fmt: skip
    """Score search_lr (full, halving, with schedule shapes), the range test, torch-lr-finder and Lightning on held-out seeds.

    Regret against the grid-best held-out loss, and the searches' wall time against the grid's. Writes
    OUT/bench_search.json (every cell) and OUT/search_bench.md (the tables and the targets).
    """
    from lrkit.bench import search_report
    from lrkit.bench.search import Config, run

    config = Config.quick() if quick else Config()
    given = _given(problems, optimizers, seeds, grid_points, workers)
    config = dataclasses.replace(config, **given, compare_tlf=not no_tlf, compare_lightning=not no_lightning)
    report = _run("search", run, config)
    (out / "bench_search.json").write_text(json.dumps(report, indent=1))
    text = search_report.table(report)
    (out / "search_bench.md").write_text(text + "\n")
    click.echo(text)
    click.echo(f"wrote {out / 'bench_search.json'} and {out / 'search_bench.md'}")


@bench.command(name="time-to-target")
@click.option("--quick", is_flag=True, help="A smoke run of seconds: regression, one seed, a 2-point grid, a tenth of the budget.")
@click.option("--problems", default=None, help="Comma-separated lab problems (default: mnist1d_cnn,digits_cnn,regression).")
@click.option("--seeds", default=None, help="Comma-separated seeds every recipe trains from (default: 0,1,2).")
@click.option("--recipes", default=None,
              help="Comma-separated recipes besides the tuned constant, which always runs (default: nadamw_cosine,one_cycle,"
                   "search,schedulefree_adamw,prodigy,self_tuning).")  # fmt: skip
@click.option("--out", type=OUT_DIR, default=Path("lrkit-bench"), show_default=True, help="Output folder (checked first).")
def time_to_target(quick: bool, problems: str | None, seeds: str | None, recipes: str | None, out: Path) -> None:
    """Steps and seconds (tuning included) each lr recipe needs to reach the tuned constant lr's best; the 3e-4 folklore.

    Seconds are one thread's CPU seconds (the wall of an idle core). Writes OUT/time_to_target.json (every run),
    OUT/time_to_target.md (the tables, the goal, the folklore) and OUT/time_to_target_profile.png (the performance
    profile over the seconds).
    """
    from lrkit.bench import time_to_target_report as report_
    from lrkit.bench.time_to_target import Config, run

    config = Config.quick() if quick else Config()
    given = _given(problems, None, seeds, None, None)  # the options the benchmarks share, read the same way
    if recipes is not None:
        given["recipes"] = _names(recipes)
    config = dataclasses.replace(config, **given)
    report = _run("time-to-target", run, config)
    (out / "time_to_target.json").write_text(json.dumps(report, indent=1))
    text = report_.table(report)
    (out / "time_to_target.md").write_text(text + "\n")
    report_.figure(report).savefig(out / "time_to_target_profile.png", dpi=110)
    click.echo(text)
    click.echo(f"wrote {out / 'time_to_target.json'}, {out / 'time_to_target.md'} and {out / 'time_to_target_profile.png'}")


@bench.command(name="ray-scaling")
@click.option("--quick", is_flag=True, help="A smoke run: 8 members, 2 epochs, shards of 2.")
@click.option("--values", type=click.IntRange(min=1), default=16, show_default=True, help="Lrs of the study (log-spaced, 1 to 1e-4).")
@click.option("--seeds", type=click.IntRange(min=1), default=50, show_default=True, help="Seeds per lr.")
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True, help="Epochs per member.")
@click.option("--chunk", type=click.IntRange(min=1), default=100, show_default=True, help="Members per population and per Ray shard.")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True, help="Runs of each setting; the fastest counts.")
@click.option("--out", type=OUT_DIR, default=Path("lrkit-bench"), show_default=True, help="Output folder (checked first).")
def ray_scaling(quick: bool, values: int, seeds: int, epochs: int, chunk: int, repeats: int, out: Path) -> None:
    """The same lab study on the local engine and on Ray with 1 and 2 workers: member-epochs per second, ray.init apart, the model.

    Writes OUT/ray_scaling.json (every measurement) and OUT/ray_scaling.md (the table, the model, the targets).
    """
    from lrkit.bench.ray_scaling import Config, run, table

    config = Config.quick() if quick else Config(values=values, seeds=seeds, epochs=epochs, chunk=chunk, repeats=repeats)
    report = run(config, progress=lambda step: click.echo(f"running: {step}", err=True))
    (out / "ray_scaling.json").write_text(json.dumps(report, indent=1))
    text = table(report)
    (out / "ray_scaling.md").write_text(text + "\n")
    click.echo(text)
    click.echo(f"wrote {out / 'ray_scaling.json'} and {out / 'ray_scaling.md'}")
