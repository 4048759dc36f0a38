"""Surfaces: formulas at known points, minima, gradients, grids, serialization and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrkit.errors import LandscapeError
from lrkit.landscape import SURFACES, get_surface, quadratic, rastrigin
from lrkit.landscape.surfaces import MAX_GRID_POINTS, surface_from_dict


def _f(name: str, *point: float) -> float:
    return float(get_surface(name)(torch.tensor(point, dtype=torch.float64)))


def _grad(surface: object, point: list[float]) -> np.ndarray:
    x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    surface(x).backward()  # type: ignore[operator]
    assert x.grad is not None
    return x.grad.numpy()


@pytest.mark.parametrize("name", SURFACES)
def test_every_minimum_is_a_stationary_point_of_value_zero(name: str) -> None:
    s = get_surface(name)
    for m in s.minima:
        assert float(s(torch.tensor(m, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-9)
        np.testing.assert_allclose(_grad(s, list(m)), 0.0, atol=1e-4)  # Himmelblau's minima are given to 6 digits
    assert len(s.start) == s.dim and s.lr > 0


def test_formulas_at_known_points() -> None:
    assert _f("rosenbrock", 0.0, 0.0) == 1.0
    assert _f("rosenbrock", -1.0, 1.0) == 4.0
    assert _f("beale", 0.0, 0.0) == pytest.approx(1.5**2 + 2.25**2 + 2.625**2)
    assert _f("himmelblau", 0.0, 0.0) == 170.0
    assert _f("saddle", 1.0, 2.0) == -3.0
    assert _f("rastrigin", 0.5, 0.0) == pytest.approx(20.0 + 0.25 + 10.0 - 10.0)


def test_quadratic_has_the_chosen_condition_number_even_when_rotated() -> None:
    s = quadratic(50.0, angle=0.7)
    # the Hessian by autograd: eigenvalues (1, 50)
    hess = torch.autograd.functional.hessian(lambda x: s(x), torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(np.linalg.eigvalsh(hess.numpy()), [1.0, 50.0], rtol=1e-12)
    c, sn = math.cos(0.7), math.sin(0.7)
    np.testing.assert_allclose(hess.numpy() @ [-sn, c], 50.0 * np.array([-sn, c]), rtol=1e-12)  # stiff axis rotated by 0.7


def test_grid_is_the_surface_evaluated_on_a_mesh() -> None:
    s = rastrigin()
    xs, ys, z = s.grid(7)
    assert z.shape == (7, 7) and xs[0] == s.domain[0][0] and ys[-1] == s.domain[1][1]
    assert z[2, 5] == pytest.approx(_f("rastrigin", xs[5], ys[2]))


def test_surfaces_round_trip_through_their_dict() -> None:
    for name in SURFACES:
        s = get_surface(name)
        assert surface_from_dict(s.to_dict()) == s
    assert surface_from_dict(quadratic(eigenvalues=[1.0, 3.0, 9.0]).to_dict()).dim == 3


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: get_surface("sphere"), "'quadratic', 'rosenbrock', 'beale', 'himmelblau', 'saddle', 'rastrigin'"),
        (lambda: quadratic(eigenvalues=[]), "non-empty"),
        (lambda: quadratic(eigenvalues="1,2"), "must be a list"),
        (lambda: quadratic(0.5), "must be >= 1"),
        (lambda: quadratic(float("inf")), "finite"),
        (lambda: quadratic(eigenvalues=[1.0, -2.0]), "> 0"),
        (lambda: quadratic(eigenvalues=[1.0, 2.0, 3.0], angle=0.3), "exactly 2"),
        (lambda: rastrigin(-1.0), ">= 0"),
        (lambda: get_surface("beale").grid(1), ">= 2"),
        (lambda: get_surface("beale").grid(math.isqrt(MAX_GRID_POINTS) + 1), "too large for memory"),
        (lambda: quadratic(eigenvalues=[1.0, 2.0, 3.0]).grid(10), "must be 2"),
    ],
)
def test_bad_input_raises_landscape_error(call: object, fragment: str) -> None:
    with pytest.raises(LandscapeError, match=None) as e:
        call()  # type: ignore[operator]
    assert fragment in str(e.value)
