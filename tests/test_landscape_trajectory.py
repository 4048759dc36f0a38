"""Trajectories of the real torch optimizers against the closed forms on a quadratic (Goh, "Why momentum really works").

f(x) = ½ Σ λᵢ xᵢ².  Gradient descent: xᵢ(t) = (1 − αλᵢ)ᵗ xᵢ(0), converging iff 0 < αλᵢ < 2, rate max|1 − αλᵢ|;
at α = 2/(λmin + λmax) the rate is (κ − 1)/(κ + 1).  Heavy ball: converges iff αλᵢ < 2 + 2β.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lrkit
from lrkit.errors import LandscapeError
from lrkit.landscape import OPTIMIZERS, Trajectory, descend, quadratic

EIGS = [0.5, 2.0, 8.0]
X0 = [1.0, -2.0, 0.5]
BOWL = quadratic(eigenvalues=EIGS)


def _rate(t: Trajectory, window: int = 40) -> float:
    """The per-step contraction of the distance to the minimum over the last `window` steps."""
    norms = np.linalg.norm(t.points, axis=1)
    return float((norms[-1] / norms[-1 - window]) ** (1.0 / window))


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.2, 0.24])
def test_gradient_descent_is_the_closed_form_per_eigencomponent(alpha: float) -> None:
    t = descend(BOWL, "sgd", lr=alpha, steps=60, start=X0)
    steps = np.arange(61)[:, None]
    expected = np.asarray(X0) * (1.0 - alpha * np.asarray(EIGS)) ** steps
    np.testing.assert_allclose(t.points, expected, rtol=1e-11, atol=1e-300)
    np.testing.assert_allclose(t.losses, 0.5 * (np.asarray(EIGS) * expected**2).sum(1), rtol=1e-11)


@pytest.mark.parametrize("factor", [0.5, 0.9, 0.99, 1.01, 1.1])
def test_gradient_descent_converges_iff_alpha_lambda_below_two(factor: float) -> None:
    alpha = factor * 2.0 / max(EIGS)
    t = descend(BOWL, "sgd", lr=alpha, steps=400, start=X0)
    rate = max(abs(1.0 - alpha * lam) for lam in EIGS)
    converges = all(0 < alpha * lam < 2 for lam in EIGS)
    assert converges == (factor < 1)
    assert (np.linalg.norm(t.points[-1]) < 1e-3 * np.linalg.norm(X0)) == converges
    assert (np.linalg.norm(t.points[-1]) > np.linalg.norm(X0)) == (not converges)
    assert _rate(t) == pytest.approx(rate, rel=1e-6)


def test_at_the_stability_limit_the_stiff_component_oscillates_forever() -> None:
    t = descend(BOWL, "sgd", lr=2.0 / 8.0, steps=50, start=X0)
    np.testing.assert_allclose(t.points[:, 2], 0.5 * (-1.0) ** np.arange(51), rtol=1e-12)


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_the_optimal_step_gives_rate_kappa_minus_one_over_kappa_plus_one(kappa: float) -> None:
    lam_min, lam_max = 1.0, kappa
    alpha = 2.0 / (lam_min + lam_max)
    t = descend(quadratic(kappa), "sgd", lr=alpha, steps=80, start=[1.0, 1.0])
    rate = (kappa - 1) / (kappa + 1)
    # both eigencomponents shrink by exactly `rate` (with opposite signs), so the distance does too, at every step
    norms = np.linalg.norm(t.points, axis=1)
    np.testing.assert_allclose(norms, math.sqrt(2.0) * rate ** np.arange(81), rtol=1e-11)
    # and any other step is slower
    for other in (0.9 * alpha, 1.1 * alpha):
        assert _rate(descend(quadratic(kappa), "sgd", lr=other, steps=80, start=[1.0, 1.0])) > rate + 1e-3


def _heavy_ball(alpha: float, beta: float, steps: int) -> np.ndarray:
    """x_{t+1} = x_t − α∇f(x_t) + β(x_t − x_{t−1}), x_{−1} = x_0 (Polyak)."""
    lam = np.asarray(EIGS)
    xs = [np.asarray(X0), np.asarray(X0)]
    for _ in range(steps):
        xs.append(xs[-1] - alpha * lam * xs[-1] + beta * (xs[-1] - xs[-2]))
    return np.array(xs[1:])


@pytest.mark.parametrize(("alpha", "beta"), [(0.05, 0.9), (0.2, 0.5), (0.3, 0.3)])
def test_torch_sgd_momentum_is_polyak_heavy_ball_with_the_same_alpha_and_beta(alpha: float, beta: float) -> None:
    # torch: v ← βv + g; x ← x − αv.  Since x_t − x_{t−1} = −αv_t, this is x_{t+1} = x_t − αg_t + β(x_t − x_{t−1}).
    t = descend(BOWL, "momentum", lr=alpha, momentum=beta, steps=60, start=X0)
    np.testing.assert_allclose(t.points, _heavy_ball(alpha, beta, 60), rtol=1e-10, atol=1e-12)


def _heavy_ball_radius(alpha: float, beta: float) -> float:
    """The spectral radius of the heavy-ball iteration [[1 + β − αλ, −β], [1, 0]] over the eigenvalues."""
    return max(max(abs(np.linalg.eigvals(np.array([[1 + beta - alpha * lam, -beta], [1.0, 0.0]])))) for lam in EIGS)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("factor", [0.97, 1.03])
def test_heavy_ball_converges_iff_alpha_lambda_below_two_plus_two_beta(beta: float, factor: float) -> None:
    alpha = factor * (2 + 2 * beta) / max(EIGS)
    t = descend(BOWL, "sgd", lr=alpha, momentum=beta, steps=600, start=X0, limit=1e100)
    radius = _heavy_ball_radius(alpha, beta)
    assert (radius < 1) == (factor < 1)
    final = np.linalg.norm(t.points[-1])
    assert (final < 1e-2 * np.linalg.norm(X0)) == (factor < 1)
    assert (final > np.linalg.norm(X0)) == (factor > 1)
    assert _rate(t, window=200) == pytest.approx(radius, rel=2e-2)


def test_heavy_ball_with_distill_optimal_parameters_reaches_rate_sqrt_kappa() -> None:
    kappa = 100.0
    alpha = (2 / (1 + math.sqrt(kappa))) ** 2
    beta = ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)) ** 2
    t = descend(quadratic(kappa), "momentum", lr=alpha, momentum=beta, steps=500, start=[1.0, 1.0])
    rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    # critical damping makes a Jordan block: the distance decays like t·rateᵗ, so measure over a long window
    assert _rate(t, window=300) == pytest.approx(rate, rel=1e-2)


def test_nesterov_is_torchs_lookahead_form() -> None:
    alpha, beta, lam = 0.1, 0.8, np.asarray(EIGS)
    t = descend(BOWL, "nesterov", lr=alpha, momentum=beta, steps=30, start=X0)
    x, v, xs = np.asarray(X0), np.zeros(3), [np.asarray(X0)]
    for _ in range(30):
        g = lam * x
        v = beta * v + g
        x = x - alpha * (g + beta * v)
        xs.append(x)
    np.testing.assert_allclose(t.points, np.array(xs), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(
    ("optimizer", "first_step"),
    [("adam", 1.0), ("adamw", 1.0), ("adagrad", 1.0), ("rmsprop", 10.0)],  # |Δx| / lr on the first step, per coordinate
)
def test_adaptive_optimizers_first_step_is_lr_times_sign_of_gradient(optimizer: str, first_step: float) -> None:
    lr = 1e-3
    t = descend(BOWL, optimizer, lr=lr, steps=1, start=X0)
    # Adam: m̂ = g, v̂ = g² → lr·g/|g|; AdaGrad: g/√(g²); RMSprop: g/√(0.01 g²) = 10·sign(g); AdamW also shrinks x by lr·wd.
    decay = 1 - lr * 1e-2 if optimizer == "adamw" else 1.0
    expected = np.asarray(X0) * decay - first_step * lr * np.sign(X0)
    np.testing.assert_allclose(t.points[1], expected, rtol=1e-6)


def test_the_schedule_drives_every_step_lr() -> None:
    schedule = lrkit.warmup(lrkit.cosine(start=0.1, steps=40), steps=10)
    t = descend("rosenbrock", "adam", lr=schedule, steps=50)
    np.testing.assert_array_equal(t.lrs, schedule.values(np.arange(50)))
    assert t.schedule == repr(schedule)


def test_gradient_noise_is_seeded_and_lets_sgd_leave_a_saddle() -> None:
    on_ridge = [-1.0, 0.0]
    still = descend("saddle", "sgd", lr=0.05, steps=100, start=on_ridge)
    assert np.all(still.points[:, 1] == 0.0)  # no gradient across the ridge: plain GD converges to the saddle point
    noisy = descend("saddle", "sgd", lr=0.05, steps=100, start=on_ridge, noise=0.1, seed=3)
    again = descend("saddle", "sgd", lr=0.05, steps=100, start=on_ridge, noise=0.1, seed=3)
    other = descend("saddle", "sgd", lr=0.05, steps=100, start=on_ridge, noise=0.1, seed=4)
    np.testing.assert_array_equal(noisy.points, again.points)
    assert not np.array_equal(noisy.points, other.points)
    assert abs(noisy.points[-1, 1]) > 1.0 and noisy.losses[-1] < still.losses[-1] - 1.0


def test_divergence_is_flagged_and_the_run_stops() -> None:
    t = descend(BOWL, "sgd", lr=0.3, steps=1000, start=X0)
    assert t.diverged and t.steps < 1000
    assert len(t.points) == len(t.losses) == t.steps + 1
    assert np.all(np.isfinite(t.points)) and np.linalg.norm(t.points[-1]) > 1e6
    assert not descend(BOWL, "sgd", lr=0.2, steps=100, start=X0).diverged


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_runs_and_round_trips_through_json(optimizer: str, tmp_path: object) -> None:
    t = descend("himmelblau", optimizer, lr=0.01, steps=20)
    assert t.points.shape == (21, 2) and t.lrs.shape == (20,)
    back = Trajectory.load(t.save(tmp_path / f"{optimizer}.json"))  # type: ignore[operator]
    np.testing.assert_array_equal(back.points, t.points)
    np.testing.assert_array_equal(back.losses, t.losses)
    assert (back.optimizer, back.momentum, back.surface, back.diverged) == (t.optimizer, t.momentum, t.surface, t.diverged)


def test_runs_in_float32_on_the_points_device() -> None:
    t = descend("quadratic", "adam", lr=0.1, steps=5, dtype=torch.float32)
    assert t.points.dtype == np.float64 and t.points.shape == (6, 2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"lr": 0.0}, "'lr' must be > 0"),
        ({"lr": -1e-3}, "'lr' must be > 0"),
        ({"lr": float("nan")}, "'lr' must be finite"),
        ({"lr": float("inf")}, "'lr' must be finite"),
        ({"lr": lrkit.constant(0.0)}, "not all 0"),
        ({"start": [1.0, 2.0, 3.0]}, "must be a point with 2 coordinates"),
        ({"start": [1.0, float("nan")]}, "'start' must be finite"),
        ({"optimizer": "lbfgs"}, "'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw'"),
        ({"optimizer": "nesterov", "momentum": 0.0}, "> 0 for nesterov"),
        ({"seed": -1}, "'seed'"),
        ({"optimizer": "adagrad", "momentum": 0.9}, "no momentum"),
        ({"momentum": 1.0}, "[0, 1)"),
        ({"steps": 0}, "positive integer"),
        ({"noise": -1.0}, "'noise'"),
    ],
)
def test_bad_input_raises_landscape_error(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"optimizer": "sgd", "lr": 0.01, **kwargs}
    with pytest.raises(LandscapeError) as e:
        descend("rosenbrock", **args)  # type: ignore[arg-type]
    assert fragment in str(e.value) and "descend" in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"optimizer": 3}, "an lrkit.Optim or an optimizer"),
        ({"lr": [0.1]}, "'lr' must be a number"),
        ({"steps": 2.0}, "'steps' must be a positive integer"),
        ({"start": "1,2"}, "'start' must be a list"),
        ({"momentum": "0.9"}, "'momentum' must be a number"),
    ],
)
def test_wrong_types_are_type_errors_and_landscape_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(TypeError) as e:
        descend("rosenbrock", **{"optimizer": "sgd", **kwargs})  # type: ignore[arg-type]
    assert isinstance(e.value, LandscapeError) and fragment in str(e.value) and "descend" in str(e.value)


@pytest.mark.parametrize(
    ("name", "spec"),
    [(name, "sgd(momentum=0.9)" if name == "momentum" else name) for name in OPTIMIZERS],
)
def test_each_name_is_the_lrkit_optim_of_the_same_name_with_the_same_points(name: str, spec: str) -> None:
    by_name = descend("beale", name, lr=1e-3, steps=15)
    by_spec = descend("beale", lrkit.Optim.parse(spec), lr=1e-3, steps=15)
    assert by_name.optim == lrkit.Optim.parse(spec) and by_name.optimizer == name
    np.testing.assert_array_equal(by_name.points, by_spec.points)


def test_the_landscape_defaults_are_torchs_hyperparameters() -> None:
    # the names meant these torch optimizers before lrkit.Optim: heavy ball 0.9, nesterov 0.9, AdamW's decay 1e-2, no momentum else
    expected = {"sgd": (0.0, None), "momentum": (0.9, None), "nesterov": (0.9, None), "adagrad": (None, None),
                "rmsprop": (0.0, 0.99), "adam": (0.9, 0.999), "adamw": (0.9, 0.999)}  # fmt: skip
    for name, (momentum, beta2) in expected.items():
        t = descend("quadratic", name, lr=0.01, steps=1)
        assert t.momentum == momentum, name
        if beta2 is not None:
            assert t.optim.beta2 == beta2, name
    assert descend("quadratic", "adamw", steps=1).optim.weight_decay == 1e-2
    assert descend("quadratic", "adam", steps=1).optim.weight_decay == 0.0


def test_a_text_spec_and_the_momentum_argument() -> None:
    spec = descend(BOWL, "sgd(momentum=0.5)", lr=0.2, steps=40, start=X0)
    np.testing.assert_allclose(spec.points, _heavy_ball(0.2, 0.5, 40), rtol=1e-10, atol=1e-12)
    overridden = descend(BOWL, "momentum", lr=0.2, momentum=0.5, steps=40, start=X0)
    np.testing.assert_array_equal(overridden.points, spec.points)
    assert (overridden.optimizer, overridden.momentum, spec.optimizer) == ("momentum", 0.5, "sgd(momentum=0.5)")
    decayed = descend(BOWL, "adam(weight_decay=0.1)", lr=1e-3, steps=1, start=X0)
    # Adam's L2 decay adds wd·x to the gradient; the first step is still lr·sign(g) with g = λx + wd·x
    np.testing.assert_allclose(decayed.points[1], np.asarray(X0) - 1e-3 * np.sign(X0), rtol=1e-6)


def test_trajectory_follows_the_one_save_convention(tmp_path: Path) -> None:
    t = descend("himmelblau", "sgd(momentum=0.5)", lr=0.01, steps=10)
    text = t.to_json(tmp_path / "t.json")
    assert json.loads(text)["optim"] == {"family": "sgd", "momentum": 0.5, "beta2": 0.0, "eps": 0.0, "weight_decay": 0.0,
                                         "centered": False}  # fmt: skip
    for back in (Trajectory.from_json(text), Trajectory.load(tmp_path / "t.json"), Trajectory.load(t.save(tmp_path / "s.json"))):
        np.testing.assert_array_equal(back.points, t.points)
        assert (back.optim, back.optimizer, back.momentum) == (t.optim, "sgd(momentum=0.5)", 0.5)
    with pytest.raises(LandscapeError, match="readable file"):
        Trajectory.load(tmp_path / "missing.json")
    with pytest.raises(LandscapeError, match="lacks"):
        Trajectory.from_dict({"surface": t.surface.to_dict()})


def test_files_written_before_lrkit_optim_still_load() -> None:
    t = descend("saddle", "momentum", lr=0.01, momentum=0.8, steps=3)
    old = {k: v for k, v in t.to_dict().items() if k != "optim"}  # what `save` wrote then: the name and the momentum
    back = Trajectory.from_dict(old)
    assert back.optim == lrkit.Optim("sgd", momentum=0.8) and back.optimizer == "momentum"
    assert Trajectory.from_dict({**old, "optimizer": "adagrad", "momentum": None}).optim == lrkit.Optim("adagrad")
