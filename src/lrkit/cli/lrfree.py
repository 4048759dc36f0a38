"""`lrkit study lr-free`: the learning-rate-free optimizers next to tuned baselines, in plain timed runs, with a report.

It is reached through `lrkit study` (whose other studies are batched populations on one problem):
`lrkit.cli.study` hands the arguments after `lr-free` to this command.

Example:
    >>> from click.testing import CliRunner
    >>> from lrkit.cli import cli
    >>> r = CliRunner().invoke(cli, ["study", "lr-free", "--help"], prog_name="lrkit")
    >>> r.exit_code, "Usage: lrkit study lr-free" in r.output
    (0, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lrkit.cli._options import DEVICE, OUT_DIR
from lrkit.cli._progress import plus_minus, study_progress
from lrkit.optim import split_specs


@click.command()
@click.option("--problems", default="blobs,digits", show_default=True, help="Comma-separated lab problems (or pkg.module:function).")
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True, help="Seeds per optimizer.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs of every run (default: each problem's).")
@click.option(
    "--optimizers", default=None,
    help="Comma-separated optimizers (default: all): sgd_momentum, adam, nadamw (tuned on a grid), sgd_schedulefree, "
         "adamw_schedulefree, prodigy, dadapt_sgd, dadapt_adam, dog, ldog.",
)  # fmt: skip
@click.option(
    "--out", type=OUT_DIR, default=Path("lrkit-out"), show_default=True, help="Folder for lr-free.json, the figures and lr-free-report.md."
)
@click.option("--device", type=DEVICE, default=None, help="Torch device to train on (default: cpu).")
def lr_free(problems: str, seeds: int, epochs: int | None, optimizers: str | None, out: Path, device: str | None) -> None:
    """Compare Schedule-Free SGD/AdamW, Prodigy, D-Adaptation and DoG with tuned SGD-momentum, Adam and NAdamW.

    The baselines' constant lr is the best of a small grid (SGD-momentum and Adam in one batched population,
    NAdamW in plain runs); then every optimizer trains in a plain, timed torch loop per seed, logging the
    effective lr of every step (d·lr for Prodigy and D-Adaptation, DoG's η, Schedule-Free's lr and averaging
    weight). Needs the extra: pip install lrkit[lrfree].

    Example: lrkit study lr-free --problems blobs,digits --seeds 2 --epochs 20 --out lrkit-out
    """
    from lrkit.lab.lrfree import compare_lr_free

    names = split_specs(optimizers) if optimizers is not None else None
    with study_progress("lr-free", unit="runs") as advance:
        try:
            result = compare_lr_free(split_specs(problems), seeds, epochs, names, out=out, device=device, progress=advance)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written (the comparison is not resumable)", err=True)
            raise click.exceptions.Exit(130) from None
    _print_summary(result.summary())
    click.echo(f"wrote {out / 'lr-free-report.md'} (and lr-free.json, figures) in {out}")


def _print_summary(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="final figures (mean ± std over seeds; plain runs)")
    for col in ("problem", "optimizer", "lr setting", "diverged", "test loss", "test acc", "final eff. lr", "s / run"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["problem"], r["optimizer"], f"{r['lr']:g}", str(r["diverged"]), plus_minus(r["test_loss"], r["test_loss_std"]),
                      plus_minus(r["test_acc"], r["test_acc_std"]), f"{r['final_effective_lr']:.3g}", f"{r['wall_s']:.2f}")  # fmt: skip
    Console().print(table)
