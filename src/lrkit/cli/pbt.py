"""`lrkit study pbt`: Population Based Training of the lr schedule on Ray Tune, the winner's lr exported as a spec.

Reached as `lrkit study pbt` (`lrkit.cli.study` hands it the arguments after `pbt`). Every argument is
checked before Ray starts: a mistake is one line and exit code 2.

Example:
    >>> from click.testing import CliRunner
    >>> r = CliRunner().invoke(pbt, ["--help"])
    >>> r.exit_code, "--population" in r.output
    (0, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lrkit import validate
from lrkit.cli._options import DEVICE, OUT_DIR
from lrkit.cli._progress import study_progress
from lrkit.errors import LabError
from lrkit.lab.pbt_result import METRICS
from lrkit.lab.problems import PROBLEMS
from lrkit.optim import HELP, split_specs

FILES = ("pbt.json", "pbt.png", "pbt-schedule.txt")
TUNE_FOLDER = "pbt-tune"  # Ray Tune's checkpoints and policy logs (pbt_policy_<trial>.txt), kept for inspection


def _pair(_ctx: Any, param: click.Parameter, text: str | None) -> tuple[float, float] | None:
    """A `low,high` option as two numbers (their order and range are checked by `lrkit.lab.pbt`)."""
    if text is None:
        return None
    items = split_specs(text)
    try:
        low, high = (float(x) for x in items)
    except ValueError:
        validate.fail("lrkit study pbt", f"--{str(param.name).replace('_', '-')}", "must be two numbers 'low,high'", text, LabError)
    return low, high


@click.command()
@click.option(
    "--problem", default="blobs", show_default=True,
    help=f"A built-in problem ({', '.join(PROBLEMS)}) or pkg.module:function (importable on every Ray node).",
)  # fmt: skip
@click.option("--population", type=click.IntRange(min=2), default=8, show_default=True, help="Trials: one member each.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Every trial's budget (default: the problem's).")
@click.option("--interval", type=click.IntRange(min=1), default=None,
              help="Epochs between PBT's exploit/explore steps (default: a tenth of --epochs).")  # fmt: skip
@click.option("--hyperparams", default="lr", show_default=True, help="Comma-separated: lr, and optionally momentum, weight_decay.")
@click.option(
    "--lr-bounds",
    default=None,
    callback=_pair,
    help="LOW,HIGH: lrs are drawn log-uniform in it and kept in it (default: a decade either side of the problem's lr).",
)
@click.option("--optimizer", default="sgd(momentum=0.9)", show_default=True, help=f"The optimizer spec: {HELP}.")
@click.option("--metric", type=click.Choice(list(METRICS)), default="loss", show_default=True,
              help="What PBT ranks by, on the problem's test split: the loss (lower is better) or the accuracy.")  # fmt: skip
@click.option(
    "--synch/--async",
    default=False,
    show_default=True,
    help="Ray's synchronous PBT (all trials compared together at every report) or its asynchronous one.",
)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Members' seeds (seed, seed+1, ...), their starting values, PBT's choices, the problem's data.")  # fmt: skip
@click.option("--address", default=None, help="A Ray cluster to join ('auto', 'ray://host:port'); default: a local Ray.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0, min_open=True), default=None,
              help="CPUs of every trial (default 1; torch threads to match).")  # fmt: skip
@click.option("--device", type=DEVICE, default=None, help="Torch device to train on (default: cpu).")
@click.option("--out", type=OUT_DIR, default=Path("lrkit-out"), show_default=True,
              help=f"Folder for {', '.join(FILES)} and Ray Tune's {TUNE_FOLDER}/.")  # fmt: skip
def pbt(problem: str, population: int, epochs: int | None, interval: int | None, hyperparams: str, lr_bounds: tuple[float, float] | None,
        optimizer: str, metric: str, synch: bool, seed: int, address: str | None, cpus_per_trial: float | None, device: str | None,
        out: Path) -> None:  # fmt: skip
    """Population Based Training (Ray Tune's scheduler) of the lr, and optionally momentum and weight decay.

    Each trial is one member: a plain torch run driven by an lrkit.Scheduler; every --interval epochs PBT copies a
    better trial's state (weights, optimizer, scheduler) into a worse one and perturbs or resamples its values.
    Writes pbt.json (every trial's history), pbt.png (the population's lr paths, the winner bold) and
    pbt-schedule.txt (the winner's lr as an lrkit spec, for lrkit.parse and lrkit.Scheduler). Needs lrkit[ray].

    Example: lrkit study pbt --problem digits --population 8 --epochs 30 --interval 3 --hyperparams lr,momentum --out runs/pbt
    """
    from lrkit.lab.pbt_tune import pbt as run_pbt

    with study_progress("pbt") as advance:
        try:
            result = run_pbt(problem, population=population, epochs=epochs, interval=interval, hyperparams=split_specs(hyperparams),
                             lr_bounds=lr_bounds, optimizer=optimizer, metric=metric, synch=synch, seed=seed, address=address,
                             num_cpus=cpus_per_trial, device=device, storage=out / TUNE_FOLDER, progress=advance)  # fmt: skip
        except KeyboardInterrupt:
            click.echo(f"interrupted: nothing was written but Ray Tune's checkpoints in {out / TUNE_FOLDER}", err=True)
            raise click.exceptions.Exit(130) from None
    result.to_json(out / FILES[0])
    result.plot().savefig(out / FILES[1], dpi=120)
    (out / FILES[2]).write_text(result.spec + "\n")
    click.echo(result.summary())
    click.echo(f"wrote {', '.join(FILES)} in {out}")
