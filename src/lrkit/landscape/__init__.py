"""The landscape playground: what a learning rate does on a loss surface, in pictures and in an interactive page.

- `surfaces`: 2-D test functions (quadratic bowl, Rosenbrock, Beale, Himmelblau, saddle, Rastrigin) as torch functions.
- `trajectory`: `descend` runs the real `torch.optim` optimizers through `lrkit.Scheduler` and records a `Trajectory`.
- `figures`: contours with trajectories, loss curves, animated GIFs, slices of real networks.
- `page`: one self-contained interactive HTML page (`write_page`).
- `nets`: Li et al.'s filter-normalized slices of a real network (`slice_1d`, `slice_2d`) and `pca_path`.
- `studies`: the workflows of `lrkit landscape surface` / `net` (`surface_runs`, `net_landscape` and their `save_*`).

Optimizers are `lrkit.Optim`s or their names; "momentum" is `MOMENTUM_SGD`, `Optim("sgd", momentum=0.9)`.

Names load on first use, so `import lrkit.landscape` stays light.

Example:
    >>> from lrkit import landscape
    >>> bool(landscape.descend("himmelblau", "adam", lr=0.1, steps=300).losses[-1] < 1e-6)
    True
"""

from __future__ import annotations

from lrkit._lazy import lazy_attributes

_LAZY = {
    "Surface": "surfaces",
    "SURFACES": "surfaces",
    "get_surface": "surfaces",
    "quadratic": "surfaces",
    "rosenbrock": "surfaces",
    "beale": "surfaces",
    "himmelblau": "surfaces",
    "saddle": "surfaces",
    "rastrigin": "surfaces",
    "Trajectory": "trajectory",
    "OPTIMIZERS": "trajectory",
    "descend": "trajectory",
    "MOMENTUM_SGD": "trajectory",
    "landscape_optim": "trajectory",
    "plot_trajectories": "figures",
    "save_gif": "figures",
    "plot_slices": "figures",
    "plot_slice_2d": "figures",
    "plot_pca_path": "figures",
    "write_page": "page",
    "page_html": "page",
    "page_trajectory": "page",
    "PAGE_SCHEDULES": "page",
    "Slice1D": "nets",
    "Slice2D": "nets",
    "PCAPath": "nets",
    "filter_normalized_direction": "nets",
    "slice_1d": "nets",
    "slice_2d": "nets",
    "pca_path": "nets",
    "train_with_checkpoints": "nets",
    "schedule_shape": "studies",
    "surface_runs": "studies",
    "save_surface_study": "studies",
    "NetLandscape": "studies",
    "net_landscape": "studies",
    "save_net_study": "studies",
    "check_net_landscape": "studies",
    "check_surface_output": "studies",
    "MAX_STEPS": "trajectory",
}


__getattr__ = lazy_attributes(__name__, {name: f"{__name__}.{module}" for name, module in _LAZY.items()})


__all__ = sorted(_LAZY)
