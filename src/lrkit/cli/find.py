"""`lrkit find`: the learning-rate range test on a built-in (or your own) problem; writes a plot and JSON."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lrkit.cli._options import DEVICE, OUT_DIR
from lrkit.optim import HELP, Optim

if TYPE_CHECKING:
    from lrkit.finder_result import LRFinderResult


@click.command()
@click.option("--problem", default="blobs", show_default=True, help="A built-in problem (e.g. blobs, digits) or 'pkg.module:function'.")
@click.option(
    "--optimizer",
    default="sgd(momentum=0.9)",
    show_default=True,
    help=f"The optimizer spec: {HELP}.",
    is_eager=True,
    callback=lambda _ctx, _param, text: Optim.of(text, "lrkit find", "--optimizer"),
)
@click.option("--start", type=float, default=1e-7, show_default=True, help="First lr of the ramp.")
@click.option("--end", type=float, default=10.0, show_default=True, help="Last lr of the ramp.")
@click.option("--steps", type=int, default=100, show_default=True, help="Optimizer updates in the test.")
@click.option("--mode", type=click.Choice(["exp", "linear"]), default="exp", show_default=True, help="Exponential or linear ramp.")
@click.option("--repeats", type=int, default=1, show_default=True, help="Independent tests; the suggestion is their log-mean.")
@click.option("--val-batches", type=int, default=None, help="Record the loss on this many test-split batches instead of the train loss.")
@click.option("--accuracy", is_flag=True, help="Record accuracy (Smith's test; with --val-batches on the test split).")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Seeds the model, the data order and the problem's data (0 .. 2**63 - 1).",
)
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="The torch device to test on (cpu, cuda, cuda:N, mps).")
@click.option("--out", type=OUT_DIR, default=Path("lrkit-find"), show_default=True, help="Output folder (made if missing).")
def find(problem: str, optimizer: Optim, start: float, end: float, steps: int, mode: str, repeats: int,
         val_batches: int | None, accuracy: bool, seed: int, device: str, out: Path) -> None:  # fmt: skip
    """Run the range test on PROBLEM and write OUT/lr_find.png and OUT/lr_find.json.

    Example: lrkit find --problem digits --optimizer adam --out runs/digits
    """
    spec = optimizer  # read first (eager), so a bad spec is one line, exit 2, before --out is made
    from lrkit.lab.problems import get_problem
    from lrkit.torch.finder import find_on_problem

    p = get_problem(problem, seed=seed)
    result = find_on_problem(p, spec, seed=seed, val_batches=val_batches, accuracy=accuracy, device=device,
                             start=start, end=end, steps=steps, mode=mode, repeats=repeats)  # fmt: skip
    result.plot(title=f"{p.name} / {spec.spec}: {result.signal}").savefig(out / "lr_find.png", dpi=120)
    result.to_json(out / "lr_find.json")
    _report(result, out)


def _report(result: LRFinderResult, out: Path) -> None:
    click.echo(f"stopped: {result.stop_reason} after {result.stopped_at + 1} updates")
    for name, lr in result.suggestions.items():
        mark = " (default)" if name == result.rule else ""
        click.echo(f"  {name:8s} {lr:.3g}{mark}" if lr is not None else f"  {name:8s} -")
    if result.spread != 1.0 and math.isfinite(result.spread):
        click.echo(f"  repeats spread: x{result.spread:.2f}")
    if result.suggestion is not None:
        low, high = result.bounds()
        click.echo(f"bounds for cyclic / one-cycle: {low:.3g} .. {high:.3g}")
    for note in result.warnings:
        click.echo(f"warning: {note}")
    click.echo(f"wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}")
