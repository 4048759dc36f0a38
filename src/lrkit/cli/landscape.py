"""`lrkit landscape`: trajectories on test surfaces, slices of real networks, and the interactive page.

lrkit landscape --html out.html
lrkit landscape surface --surface rosenbrock --optimizer sgd,adam --lr 1e-3,1e-2 --out DIR
lrkit landscape net --problem blobs --out DIR
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lrkit.errors import LandscapeError, bad

if TYPE_CHECKING:
    from lrkit.schedules.base import Schedule

OUT = click.Path(file_okay=False, path_type=Path)


@click.group(invoke_without_command=True)
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the interactive page to this .html file."
)
@click.option(
    "--steps", type=click.IntRange(1, 5000), default=200, show_default=True, help="Steps of each trajectory on the page (with --html)."
)
@click.pass_context
def landscape(ctx: click.Context, html: Path | None, steps: int) -> None:
    """See what a learning rate does: trajectories on surfaces, slices of real networks, an interactive page.

    Example: lrkit landscape --html landscape.html
    """
    if html is not None:
        _write_page(html, steps)
    elif ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@landscape.command()
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=Path("landscape.html"), show_default=True)
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
    help="Comma-separated: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw.",
)
@click.option("--lr", "lrs", default=None, help="Comma-separated step sizes (default: the surface's).")
@click.option(
    "--schedule",
    default="constant",
    show_default=True,
    help="A page kind (constant, cosine, step_decay, ...) or a spec with peak 1, scaled by each --lr.",
)
@click.option("--momentum", type=float, default=None, help="Momentum / Adam's beta1 (default: per optimizer).")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--start", default=None, help="Start point 'x,y' (default: the surface's).")
@click.option("--noise", type=float, default=0.0, show_default=True, help="Std of Gaussian gradient noise (mini-batch model).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@click.option("--gif/--no-gif", default=True, show_default=True, help="Also write an animated GIF.")
@click.option("--frames", type=click.IntRange(min=2), default=30, show_default=True, help="Frames of the GIF.")
@click.option("--resolution", type=click.IntRange(min=2), default=200, show_default=True, help="Grid points per side of the contours.")
@click.option("--out", type=OUT, default=Path("landscape-out"), show_default=True, help="Folder for the PNG, GIF and JSON.")
def surface(
    surface: str, optimizer: str, lrs: str | None, schedule: str, momentum: float | None, steps: int,
    start: str | None, noise: float, seed: int, gif: bool, frames: int, resolution: int, out: Path,
) -> None:  # fmt: skip
    """Run optimizers x step sizes on a test surface; write contours + loss curves (PNG), a GIF and the trajectories (JSON).

    Example: lrkit landscape surface --surface rosenbrock --optimizer sgd,adam --lr 1e-3,1e-2 --out DIR
    """
    from lrkit.landscape.figures import plot_trajectories, save_gif
    from lrkit.landscape.surfaces import check_grid, get_surface
    from lrkit.landscape.trajectory import OPTIMIZERS, check_lr, descend

    surf = get_surface(surface)
    check_grid("lrkit landscape surface", "--resolution", resolution, resolution)
    names = _split(optimizer, "--optimizer", str)
    for name in names:
        if name not in OPTIMIZERS:
            raise LandscapeError(bad("lrkit landscape surface", "--optimizer", f"must name optimizers among {', '.join(OPTIMIZERS)}", name))
    rates = [check_lr("lrkit landscape surface", "--lr", v) for v in _split(lrs, "--lr", float)] if lrs else [surf.lr]
    shape = _shape(schedule, steps)
    x0 = _split(start, "--start", float) if start else None
    jobs = [(name, lr) for name in names for lr in rates]
    runs = []
    for name, lr in _progress(jobs, f"{surf.name}: trajectories"):
        runs.append(descend(surf, name, lr * shape, steps=steps, start=x0, momentum=momentum, noise=noise, seed=seed))
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{surf.name}.png"
    plot_trajectories(surf, runs, resolution=resolution, title=f"{surf.name}, schedule {schedule}").savefig(png, dpi=120)
    (out / f"{surf.name}-trajectories.json").write_text(json.dumps([r.to_dict() for r in runs]))
    for r in runs:
        click.echo(f"{r.label:<32} final loss {r.losses[-1]:.4g} after {r.steps} steps, at ({r.points[-1][0]:.4g}, {r.points[-1][1]:.4g})")
    click.echo(f"wrote {png}")
    if gif:
        gif_path = save_gif(surf, runs, out / f"{surf.name}.gif", frames=frames, resolution=min(resolution, 120))
        click.echo(f"wrote {gif_path}")


@landscape.command()
@click.option("--problem", default="blobs", show_default=True, help="A built-in problem of lrkit.lab (blobs, digits, ...).")
@click.option("--lr", "lrs", default=None, help="Comma-separated lrs to compare (default: 20x the problem's lr and its lr).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the problem's).")
@click.option("--points", type=click.IntRange(min=3), default=41, show_default=True, help="Points of each 1-D slice.")
@click.option("--grid", type=click.IntRange(min=2), default=21, show_default=True, help="Points per side of the 2-D slices.")
@click.option("--distance", type=float, default=1.0, show_default=True, help="Half-width of the slices, in filter-normalized units.")
@click.option(
    "--directions", type=click.IntRange(min=1), default=5, show_default=True, help="Random directions averaged for the curvature."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=OUT, default=Path("landscape-out"), show_default=True)
def net(
    problem: str, lrs: str | None, epochs: int | None, points: int, grid: int, distance: float, directions: int, seed: int, out: Path
) -> None:
    """Train a problem's model at several lrs; write 1-D and 2-D filter-normalized slices and the PCA path (PNG, JSON).

    Example: lrkit landscape net --problem blobs --out DIR
    """
    from lrkit.lab.problems import get_problem
    from lrkit.landscape.surfaces import check_grid
    from lrkit.landscape.trajectory import check_lr

    check_grid("lrkit landscape net", "--grid", grid, grid)
    prob = get_problem(problem)
    rates = [check_lr("lrkit landscape net", "--lr", v) for v in _split(lrs, "--lr", float)] if lrs else [20 * prob.lr, prob.lr]
    out.mkdir(parents=True, exist_ok=True)
    summary = [_study_lr(prob, lr, epochs, points, grid, distance, directions, seed, out) for lr in _progress(rates, f"{prob.name}: lrs")]
    _write_net_summary(summary, out)


def _study_lr(
    prob: Any, lr: float, epochs: int | None, points: int, grid: int, distance: float, directions: int, seed: int, out: Path
) -> dict[str, Any]:
    """Train at `lr`, slice around the result, and write the 2-D slice and PCA figures; return the numbers."""
    import numpy as np

    from lrkit.landscape.figures import plot_slice_2d
    from lrkit.landscape.nets import mean_loss, pca_path, slice_1d, slice_2d, train_with_checkpoints

    model, path = train_with_checkpoints(prob, lr, epochs=epochs, seed=seed)
    data = (prob.x_train, prob.y_train)
    slices = [slice_1d(model, prob.loss, data, distance=distance, steps=points, seed=seed + k) for k in range(directions)]
    curv = [s.curvature() for s in slices]
    plane = slice_2d(model, prob.loss, data, distance=distance, steps=grid, seed=seed)
    plot_slice_2d(plane, title=f"{prob.name}, lr={lr:g}: filter-normalized 2-D slice").savefig(out / f"slice-2d-lr{lr:g}.png", dpi=110)
    pca = pca_path(path)
    reach = 1.2 * float(np.abs(pca.coords).max())
    pca_plane = slice_2d(model, prob.loss, data, distance=reach, steps=grid, directions=pca.directions)
    plot_slice_2d(pca_plane, pca, title=f"{prob.name}, lr={lr:g}: training path").savefig(out / f"pca-path-lr{lr:g}.png", dpi=110)
    return {
        "lr": lr, "train_loss": mean_loss(model, prob.loss, data), "test_loss": mean_loss(model, prob.loss, (prob.x_test, prob.y_test)),
        "curvature_mean": float(np.mean(curv)), "curvatures": curv, "explained_variance": pca.explained_variance.tolist(),
        "slice": slices[0],
    }  # fmt: skip


def _write_net_summary(summary: list[dict[str, Any]], out: Path) -> None:
    from lrkit.landscape.figures import plot_slices

    fig = plot_slices([s.pop("slice") for s in summary], [f"lr={s['lr']:g}" for s in summary])
    fig.savefig(out / "slices-1d.png", dpi=120)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for s in summary:
        ev = s["explained_variance"]
        click.echo(
            f"lr={s['lr']:<8g} train loss {s['train_loss']:.4f}  test loss {s['test_loss']:.4f}  "
            f"curvature at 0: {s['curvature_mean']:.3g} (mean of {len(s['curvatures'])} directions)  PCA variance {ev[0]:.2f}+{ev[1]:.2f}"
        )
    click.echo(f"wrote {out / 'slices-1d.png'}, slice-2d-*.png, pca-path-*.png and summary.json in {out}")


def _split(text: str | None, option: str, kind: type) -> list[Any]:
    """Comma-separated values of one kind; a malformed item is a user error naming the option."""
    items = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not items:
        raise LandscapeError(bad("lrkit landscape", option, "must hold at least one comma-separated value", text))
    try:
        return [kind(s) for s in items]
    except ValueError:
        raise LandscapeError(bad("lrkit landscape", option, f"must be comma-separated {kind.__name__} values", text)) from None


def _shape(schedule: str, steps: int) -> Schedule:
    """The schedule's shape (peak 1): a page kind by name, or a spec parsed by lrkit.parse."""
    import lrkit
    from lrkit.landscape.page import PAGE_SCHEDULES, page_schedule

    if schedule in PAGE_SCHEDULES:
        return page_schedule(schedule, steps)
    return lrkit.parse(schedule)


def _progress(items: list[Any], label: str) -> Any:
    from rich.progress import track

    return track(items, description=label, transient=True)
