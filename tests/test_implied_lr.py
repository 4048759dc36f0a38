"""lrkit.ImpliedLR: Duda's sigma_theta / sigma_g against the closed forms of diagonal quadratics.

The quadratic is f(theta) = sum_i lam_i / 2 (theta_i - p_i)^2, so g_i = lam_i (theta_i - p_i).

Without noise that relation holds at every step, for whatever trajectory the optimizer takes: the
EMA moments of g are lam_i times those of theta, so sigma_theta / sigma_g = 1 / lam_i exactly,
under any lr and any optimizer, *provided* theta and g are sampled at the same point (the estimator
pairs each gradient with the weights before the step: with the weights after an SGD step the
ratio would be |1 - lr lam| / lam) and theta keeps moving above its float resolution (float64
weights, a few hundred steps). The lr regimes tested span lr * lam_max from 0.1 (slow, monotone)
through 1.0 (the stiffest coordinate lands on its minimum in one step, after which only the
decaying memory of its first steps remains) to 1.9 (oscillating at the edge of stability).

With gradient noise of variance s^2 under SGD with lr eta, x = theta - p is the AR(1) process
x' = (1 - eta lam) x - eta xi; at stationarity Var x = eta s^2 / (lam (2 - eta lam)) and, x being
independent of the fresh noise, Var g = lam^2 Var x + s^2 = 2 s^2 / (2 - eta lam). Hence
sigma_theta / sigma_g = sqrt(eta / (2 lam)) = sqrt(eta lam / 2) / lam < 1 / lam whenever SGD is stable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from lrkit.errors import ControlError
from lrkit.torch.implied import ImpliedLR

if TYPE_CHECKING:
    from lrkit.torch.monitor import Monitor


def _quadratic(n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.nn.Module, torch.nn.Parameter, torch.Tensor, torch.Tensor]:
    """A module holding one parameter `theta`, curvatures log-spaced over a factor 10, minima at p = 1 + i / n."""
    theta = torch.nn.Parameter(torch.linspace(-2.0, 3.0, n, dtype=dtype))
    model = torch.nn.Module()
    model.theta = theta
    return model, theta, torch.logspace(-1, 0, n, dtype=dtype), 1.0 + torch.arange(n, dtype=dtype) / n


def _run(opt: torch.optim.Optimizer, est: ImpliedLR, theta: torch.nn.Parameter, lam: torch.Tensor, p: torch.Tensor, steps: int,
         noise: float = 0.0, seed: int = 0) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        theta.grad = lam * (theta.detach() - p)
        if noise:
            theta.grad += noise * torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
        opt.step()
        est.update()


@pytest.mark.parametrize("lr_times_lam_max", [0.1, 1.0, 1.9])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_noiseless_quadratic_recovers_one_over_lambda(optimizer: str, lr_times_lam_max: float) -> None:
    model, theta, lam, p = _quadratic(16)
    lam = lam * 4.0  # lam in [0.4, 4]
    lr = lr_times_lam_max / 4.0
    make = {
        "sgd": lambda: torch.optim.SGD([theta], lr=lr),
        "momentum": lambda: torch.optim.SGD([theta], lr=lr / 10, momentum=0.9),  # the momentum-scaled lr keeps it stable
        "adam": lambda: torch.optim.Adam([theta], lr=lr),
    }
    opt = make[optimizer]()
    est = ImpliedLR(model, beta=0.9)
    _run(opt, est, theta, lam, p, steps=300)
    assert est.ready
    got = est.estimate()["theta"]
    assert torch.allclose(got, 1.0 / lam, rtol=1e-2, atol=0.0), (got * lam).tolist()
    assert est.group_estimates()[0] == pytest.approx(float((1.0 / lam).sort().values[7]), rel=1e-2)  # the lower middle of 16


def test_pairing_with_the_weights_before_the_step_is_what_makes_it_exact() -> None:
    """The naive pairing (weights after the step) would read |1 - lr lam| / lam: 0.9 / lam here, not 1 / lam."""
    model, theta, lam, p = _quadratic(8)
    est = ImpliedLR(model)
    _run(torch.optim.SGD([theta], lr=1.9), est, theta, lam * 0 + 1.0, p, steps=100)  # lr lam = 1.9 on every coordinate
    assert torch.allclose(est.estimate()["theta"], torch.ones(8, dtype=torch.float64), rtol=1e-6)


def test_with_noise_it_is_conservative_by_sqrt_of_lr_lambda_over_two() -> None:
    """Stationary SGD with noise: sigma_theta / sigma_g = sqrt(eta / (2 lam)), measured over 10 000 steps."""
    model, theta, lam, p = _quadratic(32)
    eta = 0.5  # eta lam in [0.05, 0.5]
    est = ImpliedLR(model, beta=0.999)  # a long window: the EMA variances are then nearly unbiased
    opt = torch.optim.SGD([theta], lr=eta)
    _run(opt, est, theta, lam, p, steps=4000, noise=1.0)  # burn-in: the slowest coordinate relaxes in ~20 steps, the EMA in ~1000
    total = torch.zeros_like(lam)
    for k in range(60):  # average over time: one EMA window holds only ~100 independent samples of the slow coordinates
        _run(opt, est, theta, lam, p, steps=100, noise=1.0, seed=k + 1)
        total += est.estimate()["theta"]
    ratio = (total / 60) / torch.sqrt(eta / (2 * lam))
    assert float(ratio.median()) == pytest.approx(1.0, abs=0.03)
    assert torch.all((ratio - 1).abs() < 0.12), ratio.tolist()
    assert torch.all(total / 60 * lam < 0.55)  # conservative: at most half of the noiseless 1 / lam at eta lam <= 0.5


def test_with_noise_the_default_window_is_more_conservative_still() -> None:
    model, theta, lam, p = _quadratic(32)
    est = ImpliedLR(model)  # beta 0.9
    _run(torch.optim.SGD([theta], lr=0.5), est, theta, lam, p, steps=3000, noise=1.0)
    ratio = est.estimate()["theta"] / torch.sqrt(0.5 / (2 * lam))
    assert float(ratio.median()) < 0.95 and float(ratio.median()) > 0.5


def test_warmup_gives_nan_then_estimates() -> None:
    model, theta, lam, p = _quadratic(4)
    est = ImpliedLR(model, beta=0.5)  # warmup 2 / (1 - 0.5) = 4
    assert est.warmup == 4
    _run(torch.optim.SGD([theta], lr=0.1), est, theta, lam, p, steps=3)
    assert not est.ready and torch.isnan(est.estimate()["theta"]).all() and math.isnan(est.group_estimates()[0])
    _run(torch.optim.SGD([theta], lr=0.1), est, theta, lam, p, steps=1)
    assert est.ready and torch.isfinite(est.estimate()["theta"]).all()


def test_floor_ceiling_eps_and_unmoved_elements() -> None:
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    model = torch.nn.Module()
    model.w = w
    est = ImpliedLR(model, warmup=2, floor=0.5, ceiling=7.0)
    for t in range(5):
        w.grad = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) * torch.tensor([1.0, 1.0 + t, 1.0], dtype=torch.float64)
        with torch.no_grad():
            w += torch.tensor([1.0, 0.01, 0.0], dtype=torch.float64)
        est.update()
    # element 0 moves under a constant gradient: sigma_theta / eps, clamped to the ceiling;
    # element 1 barely moves under a varying gradient: lifted to the floor; element 2 never moved: NaN
    got = est.estimate()["w"].tolist()
    assert got[:2] == [7.0, 0.5] and math.isnan(got[2])
    assert est.group_estimates() == [0.5]  # the NaN element is left out; the lower middle of [0.5, 7]


def test_groups_follow_the_optimizer_and_the_step_signal_matches_sgd() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    groups = [{"params": model[0].parameters(), "lr": 0.05}, {"params": model[2].parameters(), "lr": 0.2}]
    opt = torch.optim.SGD(groups)
    by_grad, by_step = ImpliedLR(model, optimizer=opt), ImpliedLR(model, optimizer=opt, signal="step")
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        by_grad.update()
        by_step.update()
    first, second = by_grad.group_estimates()
    assert len(by_grad.group_estimates()) == 2 and math.isfinite(first) and math.isfinite(second)
    for name, value in by_grad.estimate().items():  # plain SGD: the step per unit lr is minus the gradient
        assert torch.allclose(by_step.estimate()[name], value, rtol=1e-3, equal_nan=True), name
    assert by_step.group_estimates() == pytest.approx([first, second], rel=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 1.0}, "'beta' must lie in"),
        ({"beta": "0.9"}, "'beta' must be a number"),
        ({"signal": "hessian"}, "'signal'"),
        ({"signal": "step"}, "'optimizer' must be given"),
        ({"floor": 2.0, "ceiling": 1.0}, "'ceiling' must be >= floor"),
        ({"warmup": 0}, "'warmup'"),
        ({"eps": -1.0}, "'eps' must be >= 0"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ControlError, match=match):
        ImpliedLR(torch.nn.Linear(1, 1), **kwargs)  # type: ignore[arg-type]


def test_bad_model_and_quantile() -> None:
    with pytest.raises(ControlError, match="ImpliedLR: parameter 'model'"):
        ImpliedLR("model")  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="must have trainable parameters"):
        ImpliedLR(torch.nn.ReLU())
    with pytest.raises(ControlError, match="'quantile'"):
        ImpliedLR(torch.nn.Linear(1, 1)).group_estimates(quantile=1.5)


def _blobs_monitor(lr: float, epochs: int, implied: object = True) -> Monitor:
    from lrkit.lab.problems import get_problem
    from lrkit.torch.monitor import Monitor

    problem = get_problem("blobs")
    torch.manual_seed(1)
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    mon = Monitor(opt, model, implied_lr=implied)  # type: ignore[arg-type]
    order = torch.Generator().manual_seed(1)
    step = 0
    for _ in range(epochs):
        for batch in torch.randperm(len(problem.x_train), generator=order).split(problem.batch_size):
            opt.zero_grad()
            loss = problem.loss(model(problem.x_train[batch]), problem.y_train[batch])
            loss.backward()
            opt.step()
            mon.record(step, loss=loss)
            step += 1
    return mon


def test_monitor_records_the_implied_lr_next_to_the_lr_and_diagnose_compares_them() -> None:
    """Blobs, SGD at lr 1e-5 (far too low): the implied lr is ~17x above it; at 0.01 (healthy) within 2x, no finding."""
    low = _blobs_monitor(1e-5, epochs=30)
    history = low.history
    assert {"lr", "implied_lr"} <= set(history) and np.isnan(history["implied_lr"][:19]).all()
    assert np.isfinite(history["implied_lr"][20:]).all()
    findings = low.diagnose()
    assert [f.kind for f in findings] == ["lr_too_low", "implied_lr"]
    assert findings[1].evidence["ratio"] < 0.1 and "raise it toward" in findings[1].advice
    healthy = _blobs_monitor(0.01, epochs=30).diagnose()
    assert "implied_lr" not in [f.kind for f in healthy]


def test_diagnose_reports_an_lr_30x_the_implied_one() -> None:
    from lrkit.analysis.diagnose import diagnose

    t = np.arange(400)
    implied = np.where(t < 20, np.nan, 0.1)
    found = diagnose(t, 1.0 / (1 + t), lr=np.full(400, 3.0), implied_lr=implied)
    assert [f.kind for f in found] == ["healthy", "implied_lr"]
    assert found[1].evidence == {"lr": 3.0, "implied_lr": 0.1, "ratio": pytest.approx(30.0)}
    assert "30x the implied one" in found[1].advice and found[1].steps == (200, 399)
    assert len(diagnose(t, 1.0 / (1 + t), lr=np.full(400, 0.5), implied_lr=implied)) == 1  # 5x: below the 10x threshold
    assert len(diagnose(t, 1.0 / (1 + t), lr=np.full(400, 0.5), implied_lr=implied, implied_ratio=4.0)) == 2
    with pytest.raises(ControlError, match="'implied_lr' must have one value per step"):
        diagnose(t, 1.0 / (1 + t), lr=np.full(400, 0.5), implied_lr=implied[:10])


def test_monitor_implied_lr_options() -> None:
    from lrkit.torch.monitor import Monitor
    from lrkit.torch.selftuning import SelfTuningLR

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert "implied_lr" not in Monitor(opt, model).history  # off by default: the columns are unchanged
    with pytest.raises(ControlError, match="'model' must be given with implied_lr"):
        Monitor(opt, implied_lr=True)
    with pytest.raises(ControlError, match=r"'implied_lr' must be a bool or an lrkit\.ImpliedLR"):
        Monitor(opt, model, implied_lr="yes")
    other = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.1)
    with pytest.raises(ControlError, match="must be an ImpliedLR of this optimizer"):
        Monitor(other, model, implied_lr=ImpliedLR(model))
    mon = Monitor(opt, model, implied_lr=True)
    model(torch.ones(1, 2)).sum().backward()
    mon.record(0)
    with pytest.raises(ControlError, match="must follow the previous record"):
        mon.record(2)
    with pytest.raises(ControlError, match="reads itself"):
        mon.record(1, implied_lr=0.3)
    tuner = SelfTuningLR(opt, method="implied", model=model)  # the tuner updates its estimator, the Monitor reads it
    assert tuner.implied is not None
    read = Monitor(opt, model, implied_lr=tuner.implied)
    for step in range(25):
        tuner.zero_grad()
        model(torch.randn(8, 2)).pow(2).mean().backward()
        tuner.step()
        read.record(step * 2)  # a reader may skip steps
    assert tuner.implied.updates == 25 and read.history["implied_lr"][-1] == pytest.approx(tuner.implied.group_estimates()[0])
