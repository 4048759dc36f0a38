"""`lrkit schedule`: plot schedules written as specs, and print their values."""

from __future__ import annotations

from pathlib import Path

import click

from lrkit import validate
from lrkit.cli._options import OUT_FILE
from lrkit.errors import ScheduleError

MAX_STEPS = 1_000_000  # every step is drawn; a million points plot in about a second, 1e8 would take minutes and gigabytes


@click.command()
@click.argument("specs", nargs=-1, required=True)
@click.option(
    "--steps",
    type=click.IntRange(min=1, max=MAX_STEPS),
    default=1000,
    show_default=True,
    help=f"Steps to draw, each one (at most {MAX_STEPS:,}; larger: --per-epoch, or lrkit.plot_schedule on a sample).",
)
@click.option("--per-epoch", type=click.IntRange(min=1), default=None, help="Specs count epochs of this many steps.")
@click.option("--log", "log_scale", is_flag=True, help="Log-scale lr axis.")
@click.option("--out", type=OUT_FILE, default=Path("schedules.png"), show_default=True, help="The image: .png, .svg or .pdf.")
def schedule(specs: tuple[str, ...], steps: int, per_epoch: int | None, log_scale: bool, out: Path) -> None:
    """Plot schedules written as specs to an image file and print a few values.

    Each SPEC is Python-like text, e.g. "warmup(cosine(start=0.1, steps=900), steps=100)".

    Example: lrkit schedule "one_cycle(peak=0.1, total_steps=1000)" "cosine(start=0.1, steps=1000)" --out s.png
    """
    import lrkit
    from lrkit.plot import plot_schedule

    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        validate.fail("lrkit schedule", "--out", "must end in .png, .svg or .pdf", str(out), ScheduleError)
    schedules = [lrkit.parse(s) for s in specs]
    if per_epoch is not None:
        schedules = [lrkit.per_epoch(s, steps_per_epoch=per_epoch) for s in schedules]
    fig = plot_schedule(schedules, steps, labels=list(specs), log=log_scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    for spec, s in zip(specs, schedules):
        v = s.values([0, steps // 2, steps - 1])
        click.echo(f"{spec}: step 0 {v[0]:.4g}, step {steps // 2} {v[1]:.4g}, step {steps - 1} {v[2]:.4g}")
    click.echo(f"wrote {out}")
