"""The interactive page: one self-contained HTML file (inline script, no network) with sliders for the lr and momentum.

The page computes trajectories in the browser with a small port of the
surfaces and of torch.optim's update rules (`page.js`). Schedules are not
ported: every schedule kind is embedded as its values with peak 1 and scaled
by the step-size slider, so the browser's lrs are exactly those of
`lr * page_schedule(kind, steps)` in Python, and `page_trajectory(settings)`
is the Python run the page must agree with (to 1e-6; tested in a real browser).

Example:
    >>> from lrkit.landscape.page import page_html
    >>> html = page_html(steps=50)
    >>> "<script src" in html, '"steps": 50' in html
    (False, True)
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lrkit import validate
from lrkit.errors import LandscapeError
from lrkit.landscape.surfaces import SURFACES, Surface, get_surface, quadratic
from lrkit.landscape.trajectory import DEFAULT_LIMIT, OPTIMIZERS, Trajectory, descend, landscape_optim
from lrkit.schedules import constant, cosine, cyclic, exponential, one_cycle, step_decay, warmup
from lrkit.schedules.base import Schedule

PAGE_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step_decay", "exponential", "warmup_cosine", "one_cycle", "cyclic")
"""The schedules the interactive page offers (drawn in the browser from the same formulas' values).

Example:
    >>> PAGE_SCHEDULES[:2]
    ('constant', 'cosine')
"""
MAX_PAGE_STEPS = 5000  # the page recomputes the whole run on every slider move: keep it well under 100 ms


def page_schedule(kind: str, steps: int) -> Schedule:
    """The page's schedule `kind` over `steps` steps, with peak 1 (the step-size slider multiplies it).

    Example:
        >>> page_schedule("step_decay", 100)
        step_decay(start=1.0, factor=0.5, every=25)
        >>> round(page_schedule("exponential", 100)(100), 6)
        0.01
    """
    validate.choice("page_schedule", "kind", kind, LandscapeError, PAGE_SCHEDULES)
    validate.integer("page_schedule", "steps", steps, LandscapeError)
    tenth = max(1, steps // 10)
    shapes: dict[str, Schedule] = {
        "constant": constant(1.0),
        "cosine": cosine(start=1.0, steps=steps),
        "step_decay": step_decay(start=1.0, factor=0.5, every=max(1, steps // 4)),
        "exponential": exponential(start=1.0, rate=0.01 ** (1.0 / steps)),  # down to 1% of the peak at the end
        "warmup_cosine": warmup(cosine(start=1.0, steps=max(1, steps - tenth)), steps=tenth),
        "one_cycle": one_cycle(peak=1.0, total_steps=max(2, steps)),
        "cyclic": cyclic(low=0.1, high=1.0, half_cycle=max(1, steps // 8)),
    }
    return shapes[kind]


def page_surfaces() -> dict[str, Surface]:
    """The surfaces offered by the page, by the name shown: the built-ins and a rotated bowl (where Adam and SGD differ).

    Example:
        >>> list(page_surfaces())[-1]
        'quadratic_rotated'
    """
    out = {name: get_surface(name) for name in SURFACES}
    out["quadratic_rotated"] = quadratic(10.0, angle=0.5)
    return out


def page_data(steps: int = 200, *, surface: str = "rosenbrock", optimizer: str = "momentum") -> dict[str, Any]:
    """Everything the page's script needs, JSON-ready; each menu label's hyperparameters come from its `lrkit.Optim`.

    Example:
        >>> d = page_data(steps=20)
        >>> len(d["schedules"]["cosine"]), d["optimizers"][0], d["optims"]["momentum"]["momentum"]
        (20, 'sgd', 0.9)
    """
    validate.integer("page_data", "steps", steps, LandscapeError, maximum=MAX_PAGE_STEPS)
    surfaces = page_surfaces()
    validate.choice("page_data", "surface", surface, LandscapeError, tuple(surfaces))
    validate.choice("page_data", "optimizer", optimizer, LandscapeError, OPTIMIZERS)
    t = np.arange(steps)
    return {
        "steps": steps,
        "limit": DEFAULT_LIMIT,
        "surfaces": {name: s.to_dict() for name, s in surfaces.items()},
        "optimizers": list(OPTIMIZERS),
        "optims": {name: landscape_optim(name, "page_data").to_dict() for name in OPTIMIZERS},
        "schedules": {kind: page_schedule(kind, steps).values(t).tolist() for kind in PAGE_SCHEDULES},
        "default_surface": surface,
        "default_optimizer": optimizer,
    }


def page_html(steps: int = 200, *, surface: str = "rosenbrock", optimizer: str = "momentum") -> str:
    """The page as one HTML string: the template with the data and the script inlined.

    Example:
        >>> page_html(10).startswith("<!DOCTYPE html>")
        True
    """
    data = json.dumps(page_data(steps, surface=surface, optimizer=optimizer)).replace("</", "<\\/")
    folder = resources.files("lrkit.landscape")
    template = folder.joinpath("page.html").read_text(encoding="utf-8")
    script = folder.joinpath("page.js").read_text(encoding="utf-8")
    return template.replace("__LRKIT_DATA__", data).replace("__LRKIT_SCRIPT__", script)


def write_page(path: str | Path, steps: int = 200, *, surface: str = "rosenbrock", optimizer: str = "momentum") -> Path:
    """Write the interactive page to `path` (an .html file) and return the path.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_page(pathlib.Path(tempfile.mkdtemp()) / "landscape.html", steps=20)
        >>> p.stat().st_size > 10_000
        True
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        validate.fail("write_page", "path", "must end in .html", str(path), LandscapeError)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(steps, surface=surface, optimizer=optimizer), encoding="utf-8")
    return path


def page_trajectory(settings: dict[str, Any]) -> Trajectory:
    """The Python run the page shows for `settings` (the page's `window.lrkit.settings`).

    Settings: surface, optimizer, lr, momentum, schedule, start, steps. The
    momentum slider is ignored by sgd and adagrad; nesterov with momentum 0 is
    plain gradient descent.

    Example:
        >>> s = {"surface": "quadratic", "optimizer": "adam", "lr": 0.1, "momentum": 0.9,
        ...      "schedule": "cosine", "start": [-3.0, 1.5], "steps": 50}
        >>> t = page_trajectory(s)
        >>> t.steps, t.schedule
        (50, '0.1 * cosine(start=1.0, steps=50)')
    """
    func = "page_trajectory"
    missing = {"surface", "optimizer", "lr", "momentum", "schedule", "start", "steps"} - set(settings)
    if missing:
        validate.fail(func, "settings", f"lacks {sorted(missing)}", sorted(settings), LandscapeError)
    surfaces = page_surfaces()
    surf = surfaces[validate.choice(func, "surface", settings["surface"], LandscapeError, tuple(surfaces))]
    optimizer = validate.choice(func, "optimizer", settings["optimizer"], LandscapeError, OPTIMIZERS)
    momentum = None if optimizer in ("sgd", "adagrad") else settings["momentum"]
    if optimizer == "nesterov" and momentum == 0:
        optimizer, momentum = "sgd", None
    schedule = validate.positive(func, "lr", settings["lr"], LandscapeError) * page_schedule(settings["schedule"], settings["steps"])
    # descend maps the menu label through the one optimizer spec (landscape_optim), as page.js reads `optims`
    return descend(surf, optimizer, schedule, steps=settings["steps"], start=settings["start"], momentum=momentum)
