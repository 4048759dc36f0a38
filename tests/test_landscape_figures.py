"""Figures: the contour + loss panels carry the trajectories' data; the GIF is an animation of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrkit.errors import LandscapeError
from lrkit.landscape import descend
from lrkit.landscape.figures import plot_pca_path, plot_slice_2d, plot_slices, plot_trajectories, save_gif
from lrkit.landscape.nets import Slice1D, Slice2D, pca_path


def test_contour_panel_draws_every_trajectory_and_the_loss_panel_its_losses() -> None:
    runs = [descend("beale", "adam", lr=0.05, steps=30), descend("beale", "momentum", lr=0.01, steps=30)]
    fig = plot_trajectories("beale", runs, resolution=30)
    ax, loss_ax = fig.axes[:2]
    paths = [line for line in ax.get_lines() if line.get_label() in {r.label for r in runs}]
    assert [p.get_label() for p in paths] == [r.label for r in runs] and "(diverged)" in runs[1].label
    for run, line in zip(runs, paths):
        np.testing.assert_array_equal(line.get_xydata(), run.points[:, :2])
    for run, curve in zip(runs, loss_ax.get_lines()):
        np.testing.assert_array_equal(curve.get_ydata(), run.losses)
    assert loss_ax.get_yscale() == "log"
    assert loss_ax.get_ylim()[1] < 1e6, "a diverged run must not squash the other curves"
    assert ax.get_xlim() == (-4.5, 4.5)


def test_gif_has_one_frame_per_cut_and_the_last_frame_shows_the_whole_run(tmp_path: Path) -> None:
    runs = [descend("quadratic", "sgd", lr=0.15, steps=12), descend("quadratic", "adam", lr=0.3, steps=12)]
    path = save_gif("quadratic", runs, tmp_path / "q.gif", frames=4, resolution=20)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"), dtype=int)
        gif.seek(3)
        last = np.asarray(gif.convert("RGB"), dtype=int)
    assert np.abs(first - last).sum() > 0
    with pytest.raises(LandscapeError, match=r"\.gif"):
        save_gif("quadratic", runs, tmp_path / "q.png")


def test_net_figures() -> None:
    g = np.linspace(-1, 1, 7)
    fig = plot_slices([Slice1D(g, 3 * g**2), Slice1D(g, g**2)], ["sharp", "flat"])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["sharp (curvature 6)", "flat (curvature 2)"]
    path = pca_path([[torch.tensor([float(t), 0.1 * t * t, 1.0], dtype=torch.float64)] for t in range(6)])
    fig = plot_slice_2d(Slice2D(g, g, np.add.outer(g**2, g**2)), path)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_xydata(), path.coords)
    assert fig.axes[0].get_xlabel().startswith("PC 1 (")
    assert plot_pca_path(path).axes[0].get_ylabel().startswith("PC 2 (")
    with pytest.raises(LandscapeError, match="one label per slice"):
        plot_slices([Slice1D(g, g**2)], [])


def test_figures_reject_bad_input() -> None:
    with pytest.raises(LandscapeError, match="non-empty list of Trajectory"):
        plot_trajectories("saddle", [])
    with pytest.raises(LandscapeError, match="rastrigin"):
        plot_trajectories("nope", [descend("saddle", "sgd", steps=2)])
