"""`lrkit study`: run a classic learning-rate study, resumably, with figures and an HTML report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from lrkit.cli._options import DEVICE, OUT_DIR, ray_options
from lrkit.cli._progress import plus_minus, study_progress
from lrkit.lab.population import ORDERS
from lrkit.lab.problems import PROBLEMS
from lrkit.lab.studies import STUDIES
from lrkit.optim import split_specs

LR_FREE = "lr-free"  # not a population study: its own command (lrkit.cli.lrfree), reached as `lrkit study lr-free`
PBT = "pbt"  # Population Based Training on Ray Tune: its own command (lrkit.cli.pbt), reached as `lrkit study pbt`


class _StudyCommand(click.Command):
    """`lrkit study NAME ...`; with NAME lr-free or pbt the rest of the line goes to that command (its own options and --help)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        if args and args[0] in (LR_FREE, PBT):
            command = _own_command(args[0])
            return command.make_context(f"{info_name} {args[0]}", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


def _own_command(name: str) -> click.Command:
    """The command of a study that is not a population study, imported only when asked for."""
    if name == PBT:
        from lrkit.cli.pbt import pbt

        return pbt
    from lrkit.cli.lrfree import lr_free

    return lr_free


@click.command(cls=_StudyCommand)
@click.argument("name", type=click.Choice([*STUDIES, LR_FREE, PBT]))
@click.option(
    "--problem", default="blobs", show_default=True,
    help=f"A built-in problem ({', '.join(PROBLEMS)}) or pkg.module:function (a def of your own module; see get_problem).",
)  # fmt: skip
@click.option(
    "--values", "values_text", default=None,
    help="Comma-separated values to try (default: the study's classic set); optimizer study: specs such as 'sgd(momentum=0.9)'.",
)  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Seeds per value.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the problem's).")
@click.option(
    "--out", type=OUT_DIR, default=Path("lrkit-out"), show_default=True,
    help="Directory for the store, figures, tables and HTML report (one writer at a time).",
)  # fmt: skip
@click.option("--resume/--fresh", default=True, show_default=True, help="Finish a stored study in --out, or start over.")
@click.option("--chunk", type=click.IntRange(min=1), default=100, show_default=True, help="Most members trained in one population.")
@click.option("--order", type=click.Choice(list(ORDERS)), default="member", show_default=True, help="Minibatch order per seed or shared.")
@click.option("--device", type=DEVICE, default=None, help="Torch device to train on (default: cpu).")
@ray_options("2 shards per worker, at most --chunk")
def study(
    name: str, problem: str, values_text: str | None, seeds: int, epochs: int | None, out: Path, resume: bool, chunk: int, order: str,
    device: str | None, engine: str, address: str | None, shard_size: int | None, cpus_per_shard: int | None,
) -> None:  # fmt: skip
    """Run study NAME (lr, momentum, decay, patience, optimizer, schedule, batch): every value x seed in one batched population.

    NAME lr-free is another kind of study (the learning-rate-free optimizers in plain runs, on several
    problems), with its own options: lrkit study lr-free --help. So is NAME pbt (Population Based Training
    of the lr on Ray Tune): lrkit study pbt --help.

    --engine ray trains the members as shards on a Ray cluster (a local one, or --address) and stores each
    finished shard here; a worker that dies is retried, and resuming is the same command, as locally.

    Writes NAME.sqlite (resumable: re-run the same command after a crash or Ctrl-C), NAME-*.png figures,
    NAME-final.csv, NAME-records.csv and the self-contained NAME-report.html into --out. One run writes a
    store at a time (NAME.sqlite.lock): a second stops at once. A damaged store, or one of another version,
    is refused and left as it is; --fresh deletes it and starts over.

    Example: lrkit study lr --seeds 5 --out lrkit-out
    """
    from lrkit.lab.runner import study as run_study

    if name in (LR_FREE, PBT):  # reached only when options came before the name
        raise click.UsageError(f"{name} takes its own options after its name: lrkit study {name} --help")
    values = split_specs(values_text) if values_text is not None else None
    with study_progress(name) as advance:
        try:
            result = run_study(name, problem, values, seeds, epochs, out, fresh=not resume, chunk=chunk, order=order, device=device,
                               progress=advance, engine=engine, address=address, shard_size=shard_size,
                               num_cpus=cpus_per_shard)  # fmt: skip
        except KeyboardInterrupt:
            click.echo(
                f"interrupted: finished members are stored in {out / (name + '.sqlite')}; run the same command again to resume", err=True
            )
            raise click.exceptions.Exit(130) from None  # not SystemExit: the group reads that as user code exiting
    _print_summary(result.summary())
    click.echo(f"wrote {out / (name + '-report.html')} (and figures, tables, {name}.sqlite) in {out}")


def _print_summary(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="final figures (mean ± std over seeds)")
    for col in ("value", "seeds", "diverged", "train acc", "test acc", "test loss", "epochs to 75%"):
        table.add_column(col, justify="right")
    for r in rows:
        reach = r["epochs_to_0.75"]
        table.add_row(r["value"], str(r["seeds"]), str(r["diverged"]), plus_minus(r["train_acc"], r["train_acc_std"]),
                      plus_minus(r["test_acc"], r["test_acc_std"]), plus_minus(r["test_loss"], r["test_loss_std"]),
                      "never" if math.isinf(reach) else f"{reach:g}")  # fmt: skip
    Console().print(table)
