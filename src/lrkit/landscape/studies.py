"""Whole landscape workflows: optimizers x step sizes on a surface, and a real network's landscape at several lrs.

They are the library side of `lrkit landscape surface` and `lrkit landscape net`
(the command line only reads options and prints): compute with `surface_runs` /
`net_landscape`, then write the pictures and JSON with `save_surface_study` /
`save_net_study`.

Example:
    >>> runs = surface_runs("quadratic", ["sgd", "momentum"], [0.1], steps=20)
    >>> [r.label for r in runs]
    ['sgd lr=0.1', 'momentum lr=0.1']
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lrkit import validate
from lrkit.errors import LandscapeError
from lrkit.landscape.figures import check_gif, plot_slice_2d, plot_slices, plot_trajectories, save_gif
from lrkit.landscape.nets import PCAPath, Slice1D, Slice2D, check_distance, mean_loss, pca_path, slice_1d, slice_2d, train_with_checkpoints
from lrkit.landscape.page import PAGE_SCHEDULES, page_schedule
from lrkit.landscape.surfaces import Surface, check_grid, get_surface
from lrkit.landscape.trajectory import Trajectory, descend
from lrkit.optim import Optim
from lrkit.schedules import parse
from lrkit.schedules.base import Schedule

if TYPE_CHECKING:
    from lrkit.lab.problems import Problem

T = TypeVar("T")
MAX_DIRECTIONS = 1000  # random directions averaged for the curvature: each costs one 1-D slice
Progress = Callable[[list[T], str], Iterable[T]]  # wraps the work items, e.g. rich.progress.track(items, description=label)


def _plain(items: list[T], label: str) -> Iterable[T]:
    return items


def schedule_shape(schedule: str | Schedule, steps: int) -> Schedule:
    """A schedule's shape with peak 1 (each step size scales it): a page kind by name, else a spec for `lrkit.parse`.

    Example:
        >>> schedule_shape("step_decay", 100), schedule_shape("cosine(start=1.0, steps=10)", 100)
        (step_decay(start=1.0, factor=0.5, every=25), cosine(start=1.0, steps=10))
    """
    if isinstance(schedule, Schedule):
        return schedule
    return page_schedule(schedule, steps) if schedule in PAGE_SCHEDULES else parse(schedule)


def surface_runs(
    surface: str | Surface,
    optimizers: Sequence[Optim | str],
    lrs: Sequence[float] | None = None,
    *,
    schedule: str | Schedule = "constant",
    steps: int = 200,
    progress: Progress[tuple[Optim | str, float]] = _plain,
    **descend_kwargs: Any,
) -> list[Trajectory]:
    """`descend` for every optimizer x step size (default: the surface's lr), each lr scaling `schedule_shape(schedule)`.

    `descend_kwargs` (start, momentum, noise, seed, ...) go to every run.

    Example:
        >>> [r.optimizer for r in surface_runs("saddle", ["adam", "sgd(momentum=0.5)"], steps=5)]
        ['adam', 'sgd(momentum=0.5)']
    """
    surf = get_surface(surface)
    shape = schedule_shape(schedule, steps)
    rates = [validate.positive("surface_runs", "lrs", lr, LandscapeError) for lr in lrs] if lrs else [surf.lr]
    jobs = [(o, lr) for o in optimizers for lr in rates]
    return [descend(surf, o, lr * shape, steps=steps, **descend_kwargs) for o, lr in progress(jobs, f"{surf.name}: trajectories")]


def save_surface_study(
    surface: str | Surface, runs: Sequence[Trajectory], out: str | Path, *, title: str | None = None,
    resolution: int = 200, gif: bool = True, frames: int = 30,
) -> list[Path]:  # fmt: skip
    """Write OUT/<surface>.png (contours + losses), OUT/<surface>-trajectories.json and, with `gif`, OUT/<surface>.gif.

    Example:
        >>> import tempfile
        >>> runs = surface_runs("saddle", ["sgd"], steps=5)
        >>> [p.name for p in save_surface_study("saddle", runs, tempfile.mkdtemp(), resolution=20, gif=False)]
        ['saddle.png', 'saddle-trajectories.json']
    """
    surf = get_surface(surface)
    check_surface_output("save_surface_study", resolution, gif, frames)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png, trajectories = folder / f"{surf.name}.png", folder / f"{surf.name}-trajectories.json"
    plot_trajectories(surf, runs, resolution=resolution, title=title).savefig(png, dpi=120)
    trajectories.write_text(json.dumps([r.to_dict() for r in runs]))
    written = [png, trajectories]
    if gif:  # the GIF redraws every frame: a coarser grid keeps it quick
        written.append(save_gif(surf, runs, folder / f"{surf.name}.gif", frames=frames, resolution=min(resolution, 120)))
    return written


def check_surface_output(func: str, resolution: Any, gif: Any, frames: Any) -> None:
    """The pictures' settings of `save_surface_study`, checkable before any trajectory is computed.

    Example:
        >>> check_surface_output("lrkit landscape surface", 200, True, 30)
    """
    check_grid(func, "resolution", resolution, resolution)
    if validate.flag(func, "gif", gif, LandscapeError):
        check_gif(func, frames)


@dataclasses.dataclass(frozen=True, eq=False)
class NetLandscape:
    """A network trained at one lr, seen from its final weights.

    Attributes:
        lr: the constant SGD lr it was trained at.
        train_loss, test_loss: the final losses.
        curvatures: `L''(0)` along each filter-normalized random direction.
        slice: the 1-D slice along the first direction.
        plane: the 2-D slice of two random directions.
        path: the PCA projection of the training path.
        path_plane: the 2-D slice in the plane of the path's principal directions.

    Example:
        >>> import torch
        >>> g = np.linspace(-1, 1, 5)
        >>> s, p = Slice1D(g, g**2), Slice2D(g, g, np.zeros((5, 5)))
        >>> path = pca_path([[torch.tensor([float(t), t * t / 5.0, 1.0])] for t in range(4)])
        >>> NetLandscape(0.1, 0.5, 0.6, (2.0, 4.0), s, p, path, p).curvature_mean
        3.0
    """

    lr: float
    train_loss: float
    test_loss: float
    curvatures: tuple[float, ...]
    slice: Slice1D
    plane: Slice2D
    path: PCAPath
    path_plane: Slice2D

    @property
    def curvature_mean(self) -> float:
        """The mean curvature at the minimum over the random directions."""
        return float(np.mean(self.curvatures))

    def summary(self) -> dict[str, Any]:
        """The numbers, JSON-ready (one entry of summary.json)."""
        return {"lr": self.lr, "train_loss": self.train_loss, "test_loss": self.test_loss, "curvature_mean": self.curvature_mean,
                "curvatures": list(self.curvatures), "explained_variance": self.path.explained_variance.tolist()}  # fmt: skip


def net_landscape(
    problem: Problem, lr: float, *, epochs: int | None = None, points: int = 41, grid: int = 21,
    distance: float = 1.0, directions: int = 5, seed: int = 0,
) -> NetLandscape:  # fmt: skip
    """Train `problem`'s model at `lr` (`train_with_checkpoints`), then slice around the result and project its path.

    Every argument is checked before training: at least 2 epochs (the path needs 3 checkpoints), `distance`
    in (0, `nets.MAX_DISTANCE`], 1 to `MAX_DIRECTIONS` directions, a seed that leaves room for one per direction.
    A run that diverges raises a `LandscapeError` naming the lr.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> r = net_landscape(get_problem("blobs"), 0.1, epochs=2, points=5, grid=3, directions=2)
        >>> len(r.curvatures), r.plane.losses.shape
        (2, (3, 3))
    """
    epochs, directions = check_net_landscape(
        problem, lr, epochs=epochs, points=points, grid=grid, distance=distance, directions=directions, seed=seed
    )
    model, checkpoints = train_with_checkpoints(problem, lr, epochs=epochs, seed=seed)
    data = (problem.x_train, problem.y_train)
    slices = [slice_1d(model, problem.loss, data, distance=distance, steps=points, seed=seed + k) for k in range(directions)]
    plane = slice_2d(model, problem.loss, data, distance=distance, steps=grid, seed=seed)
    path = pca_path(checkpoints)
    reach = 1.2 * float(np.abs(path.coords).max())  # the plane spans the whole path, with a margin
    path_plane = slice_2d(model, problem.loss, data, distance=reach, steps=grid, directions=path.directions)
    test_loss = mean_loss(model, problem.loss, (problem.x_test, problem.y_test))
    curvatures = tuple(s.curvature() for s in slices)
    return NetLandscape(float(lr), mean_loss(model, problem.loss, data), test_loss, curvatures, slices[0], plane, path, path_plane)


def check_net_landscape(
    problem: Problem, lr: Any, *, epochs: Any = None, points: Any = 41, grid: Any = 21, distance: Any = 1.0, directions: Any = 5,
    seed: Any = 0,
) -> tuple[int, int]:  # fmt: skip
    """`(epochs, directions)` after checking every argument of `net_landscape`, so that nothing fails after training.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> check_net_landscape(get_problem("blobs"), 0.1, epochs=3)
        (3, 5)
        >>> try:
        ...     check_net_landscape(get_problem("blobs"), 0.1, epochs=1)
        ... except LandscapeError as e:
        ...     print(e)
        net_landscape: parameter 'epochs' must be an integer >= 2, got 1
    """
    from lrkit.lab.problems import Problem

    func = "net_landscape"
    validate.instance(func, "problem", problem, LandscapeError, Problem, "an lrkit.lab Problem (get_problem(name))")
    validate.positive(func, "lr", lr, LandscapeError)
    epochs = validate.integer(func, "epochs", problem.epochs if epochs is None else epochs, LandscapeError, minimum=2)
    check_grid(func, "points", points, 2)
    check_grid(func, "grid", grid, grid)
    check_distance(func, distance)
    directions = validate.integer(func, "directions", directions, LandscapeError, maximum=MAX_DIRECTIONS)
    validate.integer(func, "seed", seed, LandscapeError, minimum=0, maximum=2**63 - 1 - max(directions - 1, 1))
    return epochs, directions


def save_net_study(name: str, results: Sequence[NetLandscape], out: str | Path) -> list[Path]:
    """Write per lr slice-2d-lr<lr>.png and pca-path-lr<lr>.png, then slices-1d.png and summary.json, into `out`.

    Example:
        >>> import tempfile
        >>> from lrkit.lab.problems import get_problem
        >>> r = net_landscape(get_problem("blobs"), 0.1, epochs=2, points=5, grid=3, directions=1)
        >>> [p.name for p in save_net_study("blobs", [r], tempfile.mkdtemp())]
        ['slice-2d-lr0.1.png', 'pca-path-lr0.1.png', 'slices-1d.png', 'summary.json']
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        written += [folder / f"slice-2d-lr{r.lr:g}.png", folder / f"pca-path-lr{r.lr:g}.png"]
        plot_slice_2d(r.plane, title=f"{name}, lr={r.lr:g}: filter-normalized 2-D slice").savefig(written[-2], dpi=110)
        plot_slice_2d(r.path_plane, r.path, title=f"{name}, lr={r.lr:g}: training path").savefig(written[-1], dpi=110)
    written += [folder / "slices-1d.png", folder / "summary.json"]
    plot_slices([r.slice for r in results], [f"lr={r.lr:g}" for r in results]).savefig(written[-2], dpi=120)
    written[-1].write_text(json.dumps([r.summary() for r in results], indent=2))
    return written
