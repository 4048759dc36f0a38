"""Real networks: filter normalization (Li et al. 2018), exact slices of a linear model, the PCA path, and flat vs sharp minima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrkit.errors import LandscapeError
from lrkit.lab.problems import get_problem
from lrkit.landscape.nets import (
    filter_normalized_direction,
    mean_loss,
    pca_path,
    slice_1d,
    slice_2d,
    train_with_checkpoints,
)


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_each_filter_of_the_direction_has_the_norm_of_the_weights_filter() -> None:
    model = _conv_net()
    d = filter_normalized_direction(model, seed=1)
    for (name, p), dp in zip(model.named_parameters(), d):
        assert dp.shape == p.shape
        if p.dim() <= 1:  # biases and BatchNorm weight / bias are zeroed
            assert torch.count_nonzero(dp) == 0, name
        else:
            want = p.detach().reshape(len(p), -1).norm(dim=1)
            torch.testing.assert_close(dp.reshape(len(dp), -1).norm(dim=1), want, rtol=1e-5, atol=0)
    again, other = filter_normalized_direction(model, seed=1), filter_normalized_direction(model, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(d, again))
    assert not torch.equal(d[0], other[0])
    kept = filter_normalized_direction(model, seed=1, ignore=None)
    assert torch.equal(kept[1], model[0].bias.detach())  # ignore=None copies 1-D tensors from the weights


def test_a_linear_model_slice_is_the_exact_quadratic() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 2, dtype=torch.float64)
    loss = nn.functional.mse_loss
    d = filter_normalized_direction(model, seed=0)
    s = slice_1d(model, loss, (x, y), steps=21, distance=0.5, direction=d)
    # L(α) = mean((x(W + αD)ᵀ + b − y)²): L''(0) = 2·mean((xDᵀ)²)
    want = 2.0 * float(((x @ d[0].T) ** 2).mean())
    assert s.curvature() == pytest.approx(want, rel=1e-9)
    assert s.losses[10] == pytest.approx(mean_loss(model, loss, (x, y)), rel=1e-12)
    w = model.weight.detach()
    for a, value in zip(s.alphas[::5], s.losses[::5]):
        assert value == pytest.approx(float(((x @ (w + a * d[0]).T + model.bias.detach() - y) ** 2).mean()), rel=1e-12)


def test_slices_restore_weights_and_mode_and_accept_batches() -> None:
    model = _conv_net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    loss = nn.functional.cross_entropy
    whole = slice_1d(model, loss, (x, y), steps=5)
    batched = slice_1d(model, loss, [(x[:5], y[:5]), (x[5:], y[5:])], steps=5)
    np.testing.assert_allclose(batched.losses, whole.losses, rtol=1e-5)
    plane = slice_2d(model, loss, (x, y), steps=5)
    assert plane.losses.shape == (5, 5) and plane.losses[2, 2] == pytest.approx(whole.losses[2], rel=1e-6)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pca_path_recovers_a_planar_path() -> None:
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(40, 2, generator=gen, dtype=torch.float64))
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    ab = torch.stack([3.0 * (1 - t), 0.5 * torch.sin(3.0 * t)], 1)  # a curved path ending at (0, 0.07)
    final = torch.randn(40, generator=gen, dtype=torch.float64)
    path = [[final + basis @ (row - ab[-1])] for row in ab]
    p = pca_path(path)
    assert p.explained_variance.sum() == pytest.approx(1.0, abs=1e-10)
    assert p.explained_variance[0] > p.explained_variance[1] > 0
    np.testing.assert_allclose(p.coords[-1], 0.0, atol=1e-12)
    # a projection on an orthonormal basis of the path's plane keeps all distances between checkpoints
    dist = lambda z: np.linalg.norm(z[:, None] - z[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(p.coords), dist(ab.numpy()), atol=1e-10)
    d1, d2 = (torch.cat([t.reshape(-1) for t in d]) for d in p.directions)
    assert float(d1 @ d2) == pytest.approx(0.0, abs=1e-12) and float(d1.norm()) == pytest.approx(1.0)


def test_small_lr_finds_a_sharper_minimum_than_large_lr_on_blobs() -> None:
    prob = get_problem("blobs")
    data = (prob.x_train, prob.y_train)
    curvature = {}
    for lr in (0.5, 0.01):
        model, path = train_with_checkpoints(prob, lr, epochs=20, seed=0)
        assert len(path) == 21
        curvature[lr] = float(np.mean([slice_1d(model, prob.loss, data, distance=0.5, steps=21, seed=k).curvature() for k in range(5)]))
    print(f"\nblobs, 20 epochs: curvature at the minimum, lr=0.5: {curvature[0.5]:.3g}, lr=0.01: {curvature[0.01]:.3g}")
    assert curvature[0.01] > 2.0 * curvature[0.5] > 0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda m: slice_1d(m, nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)), steps=1), ">= 2"),
        (lambda m: slice_2d(m, nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)), steps=3000), "too large for memory"),
        (lambda m: slice_1d(m, nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)), distance=0.0), "> 0"),
        (lambda m: slice_1d(m, nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)), direction=[torch.zeros(3)]), "shaped like"),
        (lambda m: slice_1d("model", nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1))), "torch.nn.Module"),
        (lambda m: filter_normalized_direction(m, ignore="bn"), "'biasbn' or None"),
        (lambda m: pca_path([m, m]), "at least 3"),
        (lambda m: pca_path([m, m, m]), "no extent"),
        (lambda m: mean_loss(m, nn.functional.mse_loss, []), "at least one sample"),
        (lambda m: train_with_checkpoints(get_problem("blobs"), float("nan")), "'lr' must be finite"),
        (lambda m: train_with_checkpoints(get_problem("blobs"), 0.1, momentum=1.0), "'momentum' must lie in [0, 1)"),
        (lambda m: train_with_checkpoints(get_problem("blobs"), 0.1, epochs=0), "'epochs' must be a positive integer"),
    ],
)
def test_bad_input_raises_landscape_error(call: object, fragment: str) -> None:
    model = nn.Linear(2, 1)
    with pytest.raises(LandscapeError) as e:
        call(model)  # type: ignore[operator]
    assert fragment in str(e.value)


def test_train_with_checkpoints_is_plain_momentum_sgd_in_lrkits_minibatch_order() -> None:
    prob = get_problem("blobs")
    model, path = train_with_checkpoints(prob, 0.05, epochs=2, momentum=0.9, seed=3)
    # the plain torch loop: one randperm per epoch from a generator seeded with `seed`, consecutive slices, the partial one kept
    torch.manual_seed(3)
    ref = prob.make_model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    for epoch in range(2):
        for idx in torch.split(torch.randperm(len(prob.x_train), generator=gen), prob.batch_size):
            opt.zero_grad()
            prob.loss(ref(prob.x_train[idx]), prob.y_train[idx]).backward()
            opt.step()
        assert all(torch.equal(path[epoch + 1][k], v) for k, v in ref.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


def test_a_model_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module") as e:
        slice_1d("model", nn.functional.mse_loss, (torch.zeros(2, 2), torch.zeros(2, 1)))  # type: ignore[arg-type]
    assert isinstance(e.value, LandscapeError)
