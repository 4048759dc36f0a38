"""`lrkit bench`: lrkit's benchmarks; `lrkit bench finder` scores the range test's suggestions against a grid search."""

from __future__ import annotations

import dataclasses
import json
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


@bench.command()
@click.option("--quick", is_flag=True, help="A smoke run: blobs, momentum SGD, one seed, a 4-point grid, a fifth of the budget.")
@click.option("--problems", default=None, help="Comma-separated built-in problems (default: all).")
@click.option(
    "--optimizers", default=None, help="Comma-separated lrkit.Optim specs of the SGD or Adam families (default: 'sgd(momentum=0.9),adam')."
)
@click.option("--seeds", default=None, help="Comma-separated seeds (default: 0,1,2).")
@click.option("--grid-points", type=int, default=None, help="Constant lrs in the grid, 2 to 200 (default: 12).")
@click.option("--workers", type=int, default=None, help="Processes, one thread each, at most 4 per CPU core (default: 2).")
@click.option("--no-tlf", is_flag=True, help="Skip the torch-lr-finder comparison.")
@click.option("--out", type=OUT_DIR, default=Path("lrkit-bench"), show_default=True, help="Output folder (checked first).")
def finder(quick: bool, problems: str | None, optimizers: str | None, seeds: str | None, grid_points: int | None,
           workers: int | None, no_tlf: bool, out: Path) -> None:  # fmt: skip
    """Score every suggestion rule and torch-lr-finder: regret against the grid-best validation loss.

    Writes OUT/finder_bench.json (every cell), OUT/finder_bench.md (the table) and OUT/finder_bench.png.
    """
    from rich.progress import Progress

    from lrkit.bench import finder_report
    from lrkit.bench.finder import Config, run

    config = Config.quick() if quick else Config()
    specs = None if optimizers is None else tuple(split_specs(optimizers))  # specs keep their own commas
    given: dict[str, Any] = {"problems": _names(problems), "optimizers": specs, "grid_points": grid_points, "workers": workers}
    if seeds is not None:
        try:
            given["seeds"] = tuple(int(s) for s in _names(seeds) or ())
        except ValueError:
            raise click.BadParameter("must be comma-separated integers", param_hint="--seeds") from None
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None}, compare_tlf=not no_tlf)
    config.check()
    with Progress(transient=True) as progress:
        task = progress.add_task("finder benchmark", total=len(config.cells()))
        report = run(config, progress=lambda rec: progress.advance(task))
    (out / "finder_bench.json").write_text(json.dumps(report, indent=1))
    text = finder_report.table(report)
    (out / "finder_bench.md").write_text(text + "\n")
    finder_report.figure(report).savefig(out / "finder_bench.png", dpi=120)
    click.echo(text)
    click.echo(f"wrote {out / 'finder_bench.json'}, {out / 'finder_bench.md'} and {out / 'finder_bench.png'}")
