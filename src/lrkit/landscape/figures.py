"""Pictures of the landscape: contours with trajectories, loss curves, an animated GIF, and slices of real networks.

Every function returns a matplotlib Figure built with `lrkit.plot.new_figure`
(no pyplot, nothing shown), except `save_gif`, which writes the file.

Example:
    >>> from lrkit.landscape import descend, plot_trajectories
    >>> runs = [descend("rosenbrock", o, lr=2e-3, steps=50) for o in ("sgd", "momentum")]
    >>> fig = plot_trajectories("rosenbrock", runs, resolution=40)
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['sgd lr=0.002', 'momentum lr=0.002']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrkit import validate
from lrkit.errors import LandscapeError
from lrkit.landscape.nets import PCAPath, Slice1D, Slice2D
from lrkit.landscape.surfaces import Surface, get_surface
from lrkit.landscape.trajectory import Trajectory
from lrkit.plot import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_FRAMES = 1000  # 100 s of animation at 10 frames a second; every frame is drawn and kept in memory


def plot_trajectories(
    surface: str | Surface, trajectories: Sequence[Trajectory], *, resolution: int = 200, title: str | None = None
) -> Figure:
    """Contours of `surface` with every trajectory and a legend (left), their losses over the steps (right).

    Example:
        >>> from lrkit.landscape import descend
        >>> fig = plot_trajectories("saddle", [descend("saddle", "adam", lr=0.05, steps=20)], resolution=30)
        >>> len(fig.axes[1].get_lines())
        1
    """
    surf, runs = _check("plot_trajectories", surface, trajectories)
    fig = new_figure(2, size=(5.6, 4.6))
    ax, loss_ax = fig.axes
    draw_contours(ax, surf, resolution)
    for run in runs:
        (line,) = ax.plot(run.points[:, 0], run.points[:, 1], lw=1.6, marker=".", ms=2.5, label=run.label)
        ax.plot(*run.points[0, :2], "o", color=line.get_color(), ms=5)
        loss_ax.plot(np.arange(len(run.losses)), run.losses, color=line.get_color(), label=run.label)
    ax.legend(fontsize="small", loc="upper right")
    _loss_axes(loss_ax, runs)
    fig.suptitle(title or f"{surf.name}: {len(runs)} trajectories")
    return fig


def draw_contours(ax: Axes, surf: Surface, resolution: int = 200) -> None:
    """Filled contours of `surf` on its domain (log-spaced where the surface says so) with its minima marked."""
    from matplotlib.colors import LogNorm

    xs, ys, z = surf.grid(resolution)
    if surf.log_levels:
        shifted = z - z.min() + max(1e-3 * float(np.ptp(z)), 1e-12)  # log levels need a positive floor
        levels = np.geomspace(shifted.min(), shifted.max(), 30)
        ax.contourf(xs, ys, shifted, levels=levels, norm=LogNorm(), cmap="viridis", alpha=0.85)
        ax.contour(xs, ys, shifted, levels=levels[::3], norm=LogNorm(), colors="white", linewidths=0.4, alpha=0.6)
    else:
        ax.contourf(xs, ys, z, levels=30, cmap="viridis", alpha=0.85)
        ax.contour(xs, ys, z, levels=10, colors="white", linewidths=0.4, alpha=0.6)
    for m in surf.minima:
        ax.plot(m[0], m[1], "*", color="white", mec="black", ms=11, zorder=5)
    (x0, x1), (y0, y1) = surf.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _loss_axes(ax: Axes, runs: Sequence[Trajectory]) -> None:
    positive = all(np.all(r.losses > 0) for r in runs)
    if positive:
        ax.set_yscale("log")
    calm = [r.losses for r in runs if not r.diverged]
    if calm and len(calm) < len(runs):  # a diverged run would squash every other curve flat: frame the others
        lo, hi = min(float(c.min()) for c in calm), max(float(c.max()) for c in calm)
        ax.set_ylim((lo / 10, hi * 100) if positive else (lo - 0.5 * (hi - lo + 1), hi + 0.5 * (hi - lo + 1)))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)


def save_gif(
    surface: str | Surface,
    trajectories: Sequence[Trajectory],
    path: str | Path,
    *,
    frames: int = 30,
    fps: int = 10,
    resolution: int = 120,
) -> Path:
    """Write an animated GIF of the trajectories moving over the contours, the loss curves growing beside them.

    Example:
        >>> import tempfile, pathlib
        >>> from lrkit.landscape import descend
        >>> runs = [descend("quadratic", "sgd", lr=0.15, steps=20)]
        >>> p = save_gif("quadratic", runs, pathlib.Path(tempfile.mkdtemp()) / "q.gif", frames=3, resolution=20)
        >>> p.read_bytes()[:6]
        b'GIF89a'
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    path = Path(path)
    if path.suffix.lower() != ".gif":
        validate.fail("save_gif", "path", "must end in .gif", str(path), LandscapeError)
    frames, fps = check_gif("save_gif", frames, fps)
    fig = plot_trajectories(surface, trajectories, resolution=resolution)
    paths, curves = fig.axes[0].get_lines()[::2], fig.axes[1].get_lines()
    runs = list(trajectories)
    longest = max(len(r.points) for r in runs)
    cuts = np.unique(np.linspace(1, longest, frames).round().astype(int))

    def show(k: int) -> list[Any]:
        for run, line, curve in zip(runs, paths, curves):
            n = min(int(cuts[k]), len(run.points))
            line.set_data(run.points[:n, 0], run.points[:n, 1])
            curve.set_data(np.arange(n), run.losses[:n])
        return [*paths, *curves]

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # the layout is fixed after one draw; re-solving it for every frame costs most of the time
    FuncAnimation(fig, show, frames=len(cuts), blit=False).save(str(path), writer=PillowWriter(fps=fps), dpi=80)
    return path


def check_gif(func: str, frames: Any, fps: Any = 10) -> tuple[int, int]:
    """`(frames, fps)` of an animation: 2 to `MAX_FRAMES` frames, 1 to 100 frames a second.

    Example:
        >>> check_gif("save_gif", 30)
        (30, 10)
    """
    frames = validate.integer(func, "frames", frames, LandscapeError, minimum=2, maximum=MAX_FRAMES)
    return frames, validate.integer(func, "fps", fps, LandscapeError, maximum=100)


def plot_slices(slices: Sequence[Slice1D], labels: Sequence[str]) -> Figure:
    """1-D loss slices of several trained networks on one axis, each labelled with its curvature at 0.

    Example:
        >>> s = Slice1D(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9) ** 2)
        >>> plot_slices([s], ["toy"]).axes[0].get_lines()[0].get_label()
        'toy (curvature 2)'
    """
    items = [validate.instance("plot_slices", "slices", s, LandscapeError, Slice1D, "a list of Slice1D") for s in slices]
    if not items or len(items) != len(labels):
        validate.fail("plot_slices", "labels", f"must have one label per slice ({len(items)})", list(labels), LandscapeError)
    fig = new_figure()
    ax = fig.axes[0]
    for s, name in zip(items, labels):
        ax.plot(s.alphas, s.losses, label=f"{name} (curvature {s.curvature():.3g})")
    ax.set_xlabel("α (filter-normalized direction)")
    ax.set_ylabel("loss")
    ax.set_title("1-D slices through the trained weights")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def plot_slice_2d(plane: Slice2D, path: PCAPath | None = None, *, title: str | None = None) -> Figure:
    """Contours of a 2-D slice; with `path`, the PCA-projected training path drawn on it.

    Example:
        >>> g = np.linspace(-1, 1, 5)
        >>> fig = plot_slice_2d(Slice2D(g, g, np.add.outer(g**2, g**2)))
        >>> fig.axes[0].get_xlabel()
        'α'
    """
    _check_plane(plane, path)
    fig = new_figure(size=(5.6, 4.6))
    ax = fig.axes[0]
    cs = ax.contourf(plane.alphas, plane.betas, plane.losses, levels=30, cmap="viridis")
    ax.contour(plane.alphas, plane.betas, plane.losses, levels=10, colors="white", linewidths=0.4)
    fig.colorbar(cs, ax=ax, label="loss")
    if path is not None:
        ax.plot(path.coords[:, 0], path.coords[:, 1], "o-", color="orange", ms=3, lw=1.2, label="training path")
        ax.legend(fontsize="small")
        ev = path.explained_variance
        ax.set_xlabel(f"PC 1 ({100 * ev[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * ev[1]:.1f}% of variance)")
    else:
        ax.set_xlabel("α")
        ax.set_ylabel("β")
    ax.set_title(title or "loss on a 2-D slice")
    return fig


def plot_pca_path(path: PCAPath, *, title: str | None = None) -> Figure:
    """The training path in the plane of its two principal directions, checkpoints numbered by colour.

    Example:
        >>> import torch
        >>> from lrkit.landscape.nets import pca_path
        >>> p = pca_path([[torch.tensor([float(t), t * t / 5.0, 1.0])] for t in range(5)])
        >>> plot_pca_path(p).axes[0].get_xlabel().startswith("PC 1")
        True
    """
    validate.instance("plot_pca_path", "path", path, LandscapeError, PCAPath, "a PCAPath (from pca_path)")
    fig = new_figure(size=(5.6, 4.6))
    ax = fig.axes[0]
    ax.plot(path.coords[:, 0], path.coords[:, 1], "-", color="gray", lw=0.8)
    sc = ax.scatter(path.coords[:, 0], path.coords[:, 1], c=np.arange(len(path.coords)), cmap="plasma", s=14, zorder=3)
    fig.colorbar(sc, ax=ax, label="checkpoint")
    ev = path.explained_variance
    ax.set_xlabel(f"PC 1 ({100 * ev[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ev[1]:.1f}% of variance)")
    ax.set_title(title or "training path (PCA projection)")
    ax.grid(alpha=0.3)
    return fig


def _check(func: str, surface: str | Surface, trajectories: Sequence[Trajectory]) -> tuple[Surface, list[Trajectory]]:
    surf = get_surface(surface)
    items = validate.sequence(func, "trajectories", trajectories, LandscapeError)
    runs = [validate.instance(func, "trajectories", r, LandscapeError, Trajectory, "a list of Trajectory") for r in items]
    if not runs:
        validate.fail(func, "trajectories", "must be a non-empty list of Trajectory", trajectories, LandscapeError)
    if surf.dim != 2:
        validate.fail(func, "surface", "must be 2-D to draw", surf.dim, LandscapeError)
    return surf, runs


def _check_plane(plane: Slice2D, path: PCAPath | None) -> None:
    validate.instance("plot_slice_2d", "plane", plane, LandscapeError, Slice2D, "a Slice2D (from slice_2d)")
    if path is not None:
        validate.instance("plot_slice_2d", "path", path, LandscapeError, PCAPath, "a PCAPath (from pca_path) or None")
    if not np.all(np.isfinite(plane.losses)):
        validate.fail("plot_slice_2d", "plane", "must hold finite losses to draw contours", "non-finite losses", LandscapeError)
