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
import numbers
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.errors import LandscapeError, bad
from lrkit.landscape.surfaces import SURFACES, Surface, get_surface, quadratic
from lrkit.landscape.trajectory import ADAMW_WEIGHT_DECAY, DEFAULT_LIMIT, OPTIMIZERS, Trajectory, check_lr, descend
from lrkit.schedules import constant, cosine, cyclic, exponential, one_cycle, step_decay, warmup
from lrkit.schedules.base import Schedule

PAGE_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step_decay", "exponential", "warmup_cosine", "one_cycle", "cyclic")
MAX_PAGE_STEPS = 5000  # the page recomputes the whole run on every slider move: keep it well under 100 ms


def page_schedule(kind: str, steps: int) -> Schedule:
    """The page's schedule `kind` over `steps` steps, with peak 1 (the step-size slider multiplies it).

    Example:
        >>> page_schedule("step_decay", 100)
        step_decay(start=1.0, factor=0.5, every=25)
        >>> round(page_schedule("exponential", 100)(100), 6)
        0.01
    """
    if not isinstance(kind, str) or kind not in PAGE_SCHEDULES:
        raise LandscapeError(bad("page_schedule", "kind", f"must be one of {', '.join(PAGE_SCHEDULES)}", kind))
    _check_steps("page_schedule", steps)
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
    """Everything the page's script needs, JSON-ready.

    Example:
        >>> d = page_data(steps=20)
        >>> len(d["schedules"]["cosine"]), d["optimizers"][0]
        (20, 'sgd')
    """
    _check_steps("page_data", steps, MAX_PAGE_STEPS)
    surfaces = page_surfaces()
    if surface not in surfaces:
        raise LandscapeError(bad("page_data", "surface", f"must be one of {', '.join(surfaces)}", surface))
    if optimizer not in OPTIMIZERS:
        raise LandscapeError(bad("page_data", "optimizer", f"must be one of {', '.join(OPTIMIZERS)}", optimizer))
    t = np.arange(steps)
    return {
        "steps": steps,
        "limit": DEFAULT_LIMIT,
        "adamw_weight_decay": ADAMW_WEIGHT_DECAY,
        "surfaces": {name: s.to_dict() for name, s in surfaces.items()},
        "optimizers": list(OPTIMIZERS),
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
        raise LandscapeError(bad("write_page", "path", "must end in .html", str(path)))
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
    missing = {"surface", "optimizer", "lr", "momentum", "schedule", "start", "steps"} - set(settings)
    if missing:
        raise LandscapeError(bad("page_trajectory", "settings", f"lacks {sorted(missing)}", sorted(settings)))
    surfaces = page_surfaces()
    if settings["surface"] not in surfaces:
        raise LandscapeError(bad("page_trajectory", "surface", f"must be one of {', '.join(surfaces)}", settings["surface"]))
    optimizer, momentum = settings["optimizer"], settings["momentum"]
    if optimizer in ("sgd", "adagrad"):
        momentum = None
    elif optimizer == "nesterov" and momentum == 0:
        optimizer = "sgd"
    schedule = check_lr("page_trajectory", "lr", settings["lr"]) * page_schedule(settings["schedule"], settings["steps"])
    surf = surfaces[settings["surface"]]
    return descend(surf, optimizer, schedule, steps=settings["steps"], start=settings["start"], momentum=momentum)


def _check_steps(func: str, steps: Any, maximum: int | None = None) -> None:
    if (
        isinstance(steps, bool)
        or not isinstance(steps, numbers.Integral)
        or int(steps) < 1
        or (maximum is not None and int(steps) > maximum)
    ):
        raise LandscapeError(bad(func, "steps", f"must be an integer in [1, {maximum or 'inf'}]", steps))
