"""`lrkit landscape`: trajectories on test surfaces, slices of real networks, and the interactive page.

lrkit landscape --html out.html
lrkit landscape surface --surface rosenbrock --optimizer sgd,adam --lr 1e-3,1e-2 --out DIR
lrkit landscape net --problem blobs --out DIR
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lrkit import validate
from lrkit.cli._options import OUT_DIR, OUT_FILE
from lrkit.errors import LandscapeError
from lrkit.optim import HELP


@click.group(invoke_without_command=True)
@click.option("--html", type=OUT_FILE, default=None, help="Write the interactive page to this .html file.")
@click.option(
    "--steps", type=click.IntRange(1, 5000), default=200, show_default=True, help="Steps of each trajectory on the page (with --html)."
)
@click.pass_context
def landscape(ctx: click.Context, html: Path | None, steps: int) -> None:
    """See what a learning rate does: trajectories on surfaces, slices of real networks, an interactive page.

    Example: lrkit landscape --html landscape.html
    """
    steps_given = ctx.get_parameter_source("steps") is click.core.ParameterSource.COMMANDLINE
    if html is None and ctx.invoked_subcommand is None and steps_given:
        raise click.UsageError("a subcommand is needed (surface, net or page), or --html FILE to write the page")
    if html is None and steps_given:
        raise click.UsageError("--steps of 'lrkit landscape' applies only with --html FILE (each subcommand takes its own --steps)")
    if html is not None:
        _write_page(html, steps)
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@landscape.command()
@click.option("--html", type=OUT_FILE, default=Path("landscape.html"), show_default=True)
@click.option("--steps", type=click.IntRange(1, 5000), default=200, show_default=True, help="Steps of each trajectory.")
def page(html: Path, steps: int) -> None:
    """Write the self-contained interactive page (sliders for lr, momentum, schedule, start point).

    Example: lrkit landscape page --html landscape.html
    """
    _write_page(html, steps)


def _write_page(html: Path, steps: int) -> None:
    from lrkit.landscape.page import write_page

    click.echo(f"wrote {write_page(html, steps)} (open it in any browser; no network needed)")


@landscape.command()
@click.option("--surface", default="rosenbrock", show_default=True, help="quadratic, rosenbrock, beale, himmelblau, saddle or rastrigin.")
@click.option(
    "--optimizer",
    default="sgd,momentum,adam",
    show_default=True,
    help=f"Comma-separated; each {HELP}, or 'momentum' (heavy-ball SGD: sgd(momentum=0.9)).",
)
@click.option("--lr", "lrs", default=None, help="Comma-separated step sizes (default: the surface's).")
@click.option(
    "--schedule",
    default="constant",
    show_default=True,
    help="A page kind (constant, cosine, step_decay, ...) or a spec with peak 1, scaled by each --lr.",
)
@click.option("--momentum", type=float, default=None, help="Momentum / Adam's beta1, replacing each optimizer's own.")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Optimizer steps of each run (at most 100000).")
@click.option("--start", default=None, help="Start point 'x,y' (default: the surface's).")
@click.option("--noise", type=float, default=0.0, show_default=True, help="Std of Gaussian gradient noise (mini-batch model).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@click.option("--gif/--no-gif", default=True, show_default=True, help="Also write an animated GIF.")
@click.option("--frames", type=click.IntRange(min=2), default=30, show_default=True, help="Frames of the GIF.")
@click.option("--resolution", type=click.IntRange(min=2), default=200, show_default=True, help="Grid points per side of the contours.")
@click.option("--out", type=OUT_DIR, default=Path("landscape-out"), show_default=True, help="Folder for the PNG, GIF and JSON.")
def surface(
    surface: str, optimizer: str, lrs: str | None, schedule: str, momentum: float | None, steps: int,
    start: str | None, noise: float, seed: int, gif: bool, frames: int, resolution: int, out: Path,
) -> None:  # fmt: skip
    """Run optimizers x step sizes on a test surface; write contours + loss curves (PNG), a GIF and the trajectories (JSON).

    Example: lrkit landscape surface --surface rosenbrock --optimizer sgd,adam --lr 1e-3,1e-2 --out DIR
    """
    from lrkit.landscape.studies import check_surface_output, save_surface_study, surface_runs
    from lrkit.landscape.surfaces import get_surface
    from lrkit.landscape.trajectory import check_steps, landscape_optims

    func = "lrkit landscape surface"
    surf = get_surface(surface)
    check_steps(func, steps, "--steps")
    check_surface_output(func, resolution, gif, frames)
    optims = landscape_optims(optimizer, func, "--optimizer")
    rates = _rates(lrs, func)
    x0 = _split(start, "--start", float) if start else None
    runs = surface_runs(surf, optims, rates, schedule=schedule, steps=steps, progress=_progress,
                        start=x0, momentum=momentum, noise=noise, seed=seed)  # fmt: skip
    for r in runs:
        at = f"at ({r.points[-1][0]:.4g}, {r.points[-1][1]:.4g})"
        if r.diverged:
            click.echo(f"{r.label:<32} diverged after {r.steps} steps, last recorded loss {r.losses[-1]:.4g} {at}")
        else:
            click.echo(f"{r.label:<32} final loss {r.losses[-1]:.4g} after {r.steps} steps, {at}")
    written = save_surface_study(surf, runs, out, title=f"{surf.name}, schedule {schedule}", resolution=resolution, gif=gif, frames=frames)
    for path in written:
        if path.suffix != ".json":
            click.echo(f"wrote {path}")


@landscape.command()
@click.option(
    "--problem", default="blobs", show_default=True, help="A built-in problem of lrkit.lab (blobs, digits, ...) or 'pkg.module:function'."
)
@click.option("--lr", "lrs", default=None, help="Comma-separated lrs to compare (default: 20x the problem's lr and its lr).")
@click.option("--epochs", type=click.IntRange(min=2), default=None, help="Training epochs, at least 2 (default: the problem's).")
@click.option("--points", type=click.IntRange(min=3), default=41, show_default=True, help="Points of each 1-D slice.")
@click.option("--grid", type=click.IntRange(min=2), default=21, show_default=True, help="Points per side of the 2-D slices.")
@click.option("--distance", type=float, default=1.0, show_default=True, help="Half-width of the slices, in filter-normalized units.")
@click.option(
    "--directions", type=click.IntRange(min=1), default=5, show_default=True, help="Random directions averaged for the curvature."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=OUT_DIR, default=Path("landscape-out"), show_default=True, help="Folder for the PNGs and summary.json.")
def net(
    problem: str, lrs: str | None, epochs: int | None, points: int, grid: int, distance: float, directions: int, seed: int, out: Path
) -> None:
    """Train a problem's model at several lrs; write 1-D and 2-D filter-normalized slices and the PCA path (PNG, JSON).

    Example: lrkit landscape net --problem blobs --out DIR
    """
    from lrkit.lab.problems import get_problem
    from lrkit.landscape.studies import check_net_landscape, net_landscape, save_net_study

    func = "lrkit landscape net"
    rates = _rates(lrs, func)
    prob = get_problem(problem)
    rates = rates or [20 * prob.lr, prob.lr]
    settings: dict[str, Any] = dict(epochs=epochs, points=points, grid=grid, distance=distance, directions=directions, seed=seed)
    for lr in rates:  # every lr and setting, before the first training starts
        check_net_landscape(prob, lr, **settings)
    results = [net_landscape(prob, lr, **settings) for lr in _progress(rates, f"{prob.name}: lrs")]
    save_net_study(prob.name, results, out)
    for r in results:
        ev = r.path.explained_variance
        click.echo(
            f"lr={r.lr:<8g} train loss {r.train_loss:.4f}  test loss {r.test_loss:.4f}  "
            f"curvature at 0: {r.curvature_mean:.3g} (mean of {len(r.curvatures)} directions)  PCA variance {ev[0]:.2f}+{ev[1]:.2f}"
        )
    click.echo(f"wrote {out / 'slices-1d.png'}, slice-2d-*.png, pca-path-*.png and summary.json in {out}")


def _rates(text: str | None, func: str) -> list[float]:
    """The --lr values (each a finite number > 0); empty when the option is not given."""
    return [validate.positive(func, "--lr", v, LandscapeError) for v in _split(text, "--lr", float)] if text else []


def _split(text: str | None, option: str, kind: type) -> list[Any]:
    """Comma-separated values of one kind; a malformed item is a user error naming the option."""
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not items:
        validate.fail("lrkit landscape", option, "must hold at least one comma-separated value", text, LandscapeError)
    try:
        return [kind(s) for s in items]
    except ValueError:  # float("fast"): click's text, not an lrkit error, so nothing is re-raised as another kind
        validate.fail("lrkit landscape", option, f"must be comma-separated {kind.__name__} values", text, LandscapeError)


def _progress(items: list[Any], label: str) -> Any:
    from rich.progress import track

    return track(items, description=label, transient=True)
