"""Two-dimensional test surfaces as torch functions, with the domain, start and minima that make them good pictures.

A `Surface` is a frozen value: its `name` and `params` describe it completely
(the interactive page ports exactly these formulas to JavaScript), and calling
it on a tensor of shape `(..., dim)` returns the loss of shape `(...)`, so the
same object drives an optimizer (one point) and a contour plot (a grid).

Example:
    >>> import torch
    >>> from lrkit.landscape import get_surface
    >>> f = get_surface("rosenbrock")
    >>> float(f(torch.tensor([1.0, 1.0], dtype=torch.float64))), f.minima
    (0.0, ((1.0, 1.0),))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit.errors import LandscapeError

Domain = tuple[tuple[float, float], tuple[float, float]]
MAX_GRID_POINTS = 4_000_000  # 2000 x 2000 float64 values plus torch temporaries stay well under 1 GiB


@dataclasses.dataclass(frozen=True)
class Surface:
    """A loss surface over R^dim (pictures use the first two coordinates).

    Args:
        name: the formula's name, a key of `FORMULAS`.
        params: the formula's parameters (JSON-ready).
        dim: the number of coordinates a point has.
        domain: ((xmin, xmax), (ymin, ymax)) drawn by the figures and the page.
        start: a default start point that shows the surface's character.
        minima: known global minima (empty for the saddle).
        lr: a step size that plain gradient descent handles from `start`.
        log_levels: whether contours are best spaced logarithmically.

    Example:
        >>> import torch
        >>> s = quadratic(condition=4.0)
        >>> float(s(torch.tensor([1.0, 1.0], dtype=torch.float64)))
        2.5
    """

    name: str
    params: dict[str, Any]
    dim: int
    domain: Domain
    start: tuple[float, ...]
    minima: tuple[tuple[float, ...], ...]
    lr: float
    log_levels: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return FORMULAS[self.name](x, self.params)

    def grid(self, resolution: int = 200, domain: Domain | None = None) -> tuple[npt.NDArray[np.float64], ...]:
        """`(xs, ys, z)` with `z[i, j] = f(xs[j], ys[i])` on a `resolution` x `resolution` grid (float64).

        Example:
            >>> xs, ys, z = get_surface("saddle").grid(3, domain=((-1.0, 1.0), (-1.0, 1.0)))
            >>> z.tolist()
            [[0.0, -1.0, 0.0], [1.0, 0.0, 1.0], [0.0, -1.0, 0.0]]
        """
        check_grid("Surface.grid", "resolution", resolution, resolution)
        if self.dim != 2:
            validate.fail("Surface.grid", "dim", "must be 2 to draw a grid", self.dim, LandscapeError)
        (x0, x1), (y0, y1) = domain if domain is not None else self.domain
        xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
        xx, yy = np.meshgrid(xs, ys)
        pts = torch.from_numpy(np.stack([xx, yy], axis=-1))
        with torch.no_grad():
            z = self(pts).numpy()
        return xs, ys, z

    def to_dict(self) -> dict[str, Any]:
        """Everything the page and saved trajectories need, JSON-ready.

        Example:
            >>> get_surface("saddle").to_dict()["start"]
            [-1.5, 0.01]
        """
        d = dataclasses.asdict(self)
        d["domain"] = [list(r) for r in self.domain]
        d["start"] = list(self.start)
        d["minima"] = [list(m) for m in self.minima]
        return d


def check_grid(func: str, param: str, rows: Any, cols: Any) -> None:
    """A grid of `rows` x `cols` evaluations: each at least 2, and not more than `MAX_GRID_POINTS` in all.

    Example:
        >>> check_grid("slice_2d", "steps", 21, 21)
    """
    rows, cols = (validate.integer(func, param, n, LandscapeError, minimum=2) for n in (rows, cols))
    if rows * cols > MAX_GRID_POINTS:
        need = rows * cols * 8 * 4 / 2**30
        why = f"gives a grid too large for memory ({rows}x{cols}, ~{need:.1f} GiB; at most {MAX_GRID_POINTS} points)"
        validate.fail(func, param, why, rows, LandscapeError)


# -- formulas: (points (..., dim), params) -> loss (...) ----------------------------------------
def _quadratic(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    eig = x.new_tensor(p["eigenvalues"])
    if p["angle"]:
        # the eigenvectors are the axes rotated by `angle`: coordinates along them are R^T x
        c, s = math.cos(p["angle"]), math.sin(p["angle"])
        x = torch.stack([c * x[..., 0] + s * x[..., 1], -s * x[..., 0] + c * x[..., 1]], dim=-1)
    return 0.5 * (eig * x * x).sum(-1)


def _rosenbrock(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    return (1.0 - x[..., 0]) ** 2 + 100.0 * (x[..., 1] - x[..., 0] ** 2) ** 2


def _beale(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    u, v = x[..., 0], x[..., 1]
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def _himmelblau(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    u, v = x[..., 0], x[..., 1]
    return (u**2 + v - 11.0) ** 2 + (u + v**2 - 7.0) ** 2


def _saddle(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    return x[..., 0] ** 2 - x[..., 1] ** 2


def _rastrigin(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    a = float(p["amplitude"])
    return a * x.shape[-1] + (x * x - a * torch.cos(2.0 * math.pi * x)).sum(-1)


FORMULAS: dict[str, Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]] = {
    "quadratic": _quadratic,
    "rosenbrock": _rosenbrock,
    "beale": _beale,
    "himmelblau": _himmelblau,
    "saddle": _saddle,
    "rastrigin": _rastrigin,
}


# -- factories ------------------------------------------------------------------------------------
def quadratic(condition: float = 10.0, *, eigenvalues: Sequence[float] | None = None, angle: float = 0.0) -> Surface:
    """`f(x) = ½ Σ λᵢ zᵢ²`: an ill-conditioned bowl with eigenvalues `(1, condition)` (or the `eigenvalues` given).

    In 2-D the bowl's axes are rotated by `angle` radians (`z = Rᵀx`), which
    matters to the per-coordinate optimizers (AdaGrad, RMSprop, Adam).

    Example:
        >>> quadratic(eigenvalues=[0.5, 2.0, 8.0]).dim, quadratic(100.0).params["eigenvalues"]
        (3, [1.0, 100.0])
    """
    func = "quadratic"
    if eigenvalues is None:
        eigs = [1.0, validate.number(func, "condition", condition, LandscapeError)]
        if eigs[1] < 1.0:
            why = "must be >= 1 (the ratio of the largest to the smallest eigenvalue)"
            validate.fail(func, "condition", why, condition, LandscapeError)
    else:
        given = validate.sequence(func, "eigenvalues", eigenvalues, LandscapeError)
        eigs = [validate.number(func, "eigenvalues", v, LandscapeError) for v in given]
        if not eigs or min(eigs) <= 0:
            why = "must be a non-empty list of numbers > 0 (a bowl, not a saddle)"
            validate.fail(func, "eigenvalues", why, eigenvalues, LandscapeError)
    theta = validate.number(func, "angle", angle, LandscapeError)
    if theta and len(eigs) != 2:
        validate.fail(func, "angle", "needs exactly 2 eigenvalues (a rotation of the plane)", angle, LandscapeError)
    dim = len(eigs)
    start = (-3.0, 1.5) + (1.0,) * (dim - 2)
    lr = 1.0 / max(eigs)  # half the stability limit 2/λmax
    return Surface("quadratic", {"eigenvalues": eigs, "angle": theta}, dim, ((-4.0, 4.0), (-3.0, 3.0)), start, ((0.0,) * dim,), lr)


def rosenbrock() -> Surface:
    """`(1 − x)² + 100 (y − x²)²`: a curved, flat-bottomed valley; minimum (1, 1).

    Example:
        >>> rosenbrock().domain
        ((-2.0, 2.0), (-1.0, 3.0))
    """
    return Surface("rosenbrock", {}, 2, ((-2.0, 2.0), (-1.0, 3.0)), (-1.2, 1.0), ((1.0, 1.0),), 1e-3)


def beale() -> Surface:
    """Beale's function: steep walls, a flat basin; minimum (3, 0.5).

    Example:
        >>> beale().minima
        ((3.0, 0.5),)
    """
    return Surface("beale", {}, 2, ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5), ((3.0, 0.5),), 1e-2)


def himmelblau() -> Surface:
    """`(x² + y − 11)² + (x + y² − 7)²`: four global minima of value 0.

    Example:
        >>> len(himmelblau().minima)
        4
    """
    minima = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))
    return Surface("himmelblau", {}, 2, ((-5.0, 5.0), (-5.0, 5.0)), (0.0, 0.0), minima, 1e-2)


def saddle() -> Surface:
    """`x² − y²`: a saddle point at the origin and no minimum; escaping along y is the good outcome.

    Example:
        >>> saddle().minima
        ()
    """
    return Surface("saddle", {}, 2, ((-2.0, 2.0), (-2.0, 2.0)), (-1.5, 0.01), (), 0.05, log_levels=False)


def rastrigin(amplitude: float = 10.0) -> Surface:
    """`A·n + Σ (xᵢ² − A cos 2πxᵢ)`: a bowl covered in local minima; global minimum at the origin.

    Example:
        >>> rastrigin().params
        {'amplitude': 10.0}
    """
    a = validate.non_negative("rastrigin", "amplitude", amplitude, LandscapeError)
    return Surface("rastrigin", {"amplitude": a}, 2, ((-5.12, 5.12), (-5.12, 5.12)), (-4.5, 4.3), ((0.0, 0.0),), 2e-3)


FACTORIES: dict[str, Callable[[], Surface]] = {
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "beale": beale,
    "himmelblau": himmelblau,
    "saddle": saddle,
    "rastrigin": rastrigin,
}
SURFACES: tuple[str, ...] = tuple(FACTORIES)
"""The names of the built-in 2-D loss surfaces.

Example:
    >>> len(SURFACES) > 3, all(isinstance(s, str) for s in SURFACES)
    (True, True)
"""


def get_surface(name: str | Surface) -> Surface:
    """A built-in surface with its default parameters (a `Surface` is returned unchanged).

    Example:
        >>> get_surface("beale").name
        'beale'
        >>> try:
        ...     get_surface("sphere")
        ... except LandscapeError as e:
        ...     print(e)
        get_surface: parameter 'name' must be one of 'quadratic', 'rosenbrock', 'beale', 'himmelblau', 'saddle', 'rastrigin', got 'sphere'
    """
    if isinstance(name, Surface):
        return name
    return FACTORIES[validate.choice("get_surface", "name", name, LandscapeError, SURFACES)]()


def surface_from_dict(d: dict[str, Any]) -> Surface:
    """The surface written by `Surface.to_dict()`.

    Example:
        >>> s = quadratic(25.0, angle=0.3)
        >>> surface_from_dict(s.to_dict()) == s
        True
    """
    validate.instance("surface_from_dict", "d", d, LandscapeError, dict, "a dict")
    validate.choice("surface_from_dict", "d['name']", d.get("name"), LandscapeError, SURFACES)
    domain = tuple(tuple(float(v) for v in r) for r in d["domain"])
    return Surface(
        d["name"], dict(d["params"]), int(d["dim"]), domain,  # type: ignore[arg-type]
        tuple(float(v) for v in d["start"]), tuple(tuple(float(v) for v in m) for m in d["minima"]),
        float(d["lr"]), bool(d.get("log_levels", True)),
    )  # fmt: skip
