"""`lrkit study`: run a classic learning-rate study, resumably, with figures and an HTML report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from lrkit.lab.population import ORDERS
from lrkit.lab.problems import PROBLEMS
from lrkit.lab.studies import STUDIES


def split_values(text: str) -> list[str]:
    """Split at commas outside parentheses and brackets, so schedule specs stay whole.

    Example:
        >>> split_values("1e-1, 1e-2")
        ['1e-1', '1e-2']
        >>> split_values("cosine(start=0.1, steps=100),constant(0.01)")
        ['cosine(start=0.1, steps=100)', 'constant(0.01)']
    """
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return [p for p in parts if p]


@click.command()
@click.argument("name", type=click.Choice(list(STUDIES)))
@click.option("--problem", default="blobs", show_default=True, help=f"A built-in problem ({', '.join(PROBLEMS)}) or pkg.module:function.")
@click.option(
    "--values", "values_text", default=None,
    help="Comma-separated values to try (default: the study's classic set); optimizer study: specs such as 'sgd(momentum=0.9)'.",
)  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Seeds per value.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the problem's).")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("lrkit-out"), show_default=True,
    help="Directory for the store, figures, tables and HTML report.",
)  # fmt: skip
@click.option("--resume/--fresh", default=True, show_default=True, help="Finish a stored study in --out, or start over.")
@click.option("--chunk", type=click.IntRange(min=1), default=100, show_default=True, help="Most members trained in one population.")
@click.option("--order", type=click.Choice(list(ORDERS)), default="member", show_default=True, help="Minibatch order per seed or shared.")
@click.option("--device", default=None, help="Torch device to train on (default: cpu).")
def study(
    name: str, problem: str, values_text: str | None, seeds: int, epochs: int | None, out: Path, resume: bool, chunk: int, order: str,
    device: str | None,
) -> None:  # fmt: skip
    """Run study NAME (lr, momentum, decay, patience, optimizer, schedule, batch): every value x seed in one batched population.

    Writes NAME.sqlite (resumable: re-run the same command after a crash or Ctrl-C), NAME-*.png figures,
    NAME-final.csv, NAME-records.csv and the self-contained NAME-report.html into --out.

    Example: lrkit study lr --seeds 5 --out lrkit-out
    """
    from lrkit.lab.runner import study as run_study

    values = split_values(values_text) if values_text is not None else None
    with _progress(name) as advance:
        try:
            result = run_study(name, problem, values, seeds, epochs, out, fresh=not resume, chunk=chunk, order=order, device=device,
                               progress=advance)  # fmt: skip
        except KeyboardInterrupt:
            click.echo(
                f"interrupted: finished members are stored in {out / (name + '.sqlite')}; run the same command again to resume", err=True
            )
            raise SystemExit(130) from None
    _print_summary(result.summary())
    click.echo(f"wrote {out / (name + '-report.html')} (and figures, tables, {name}.sqlite) in {out}")


class _progress:
    """A rich progress bar over member-epochs, as a context manager yielding the `progress` callback."""

    def __init__(self, name: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"study {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("member-epochs"),
                            TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
        self.task = self.bar.add_task(name, total=None)

    def __enter__(self) -> Any:
        def advance(done: int, total: int) -> None:
            # drawn from the first report on, so a bad argument fails before any bar appears
            self.bar.start()
            self.bar.update(self.task, completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _print_summary(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="final figures (mean ± std over seeds)")
    for col in ("value", "seeds", "diverged", "train acc", "test acc", "test loss", "epochs to 75%"):
        table.add_column(col, justify="right")
    for r in rows:
        reach = r["epochs_to_0.75"]
        table.add_row(r["value"], str(r["seeds"]), str(r["diverged"]), _pm(r["train_acc"], r["train_acc_std"]),
                      _pm(r["test_acc"], r["test_acc_std"]), _pm(r["test_loss"], r["test_loss_std"]),
                      "never" if math.isinf(reach) else f"{reach:g}")  # fmt: skip
    Console().print(table)


def _pm(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}"
