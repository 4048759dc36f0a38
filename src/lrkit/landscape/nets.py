"""Loss landscapes of real networks: Li et al.'s filter-normalized slices and the PCA view of a training path.

Filter normalization (Li, Xu, Taylor, Studer & Goldstein, NeurIPS 2018,
`net_plotter.normalize_direction`): draw a Gaussian direction `d` shaped like the
weights `θ`; for every filter `i` (a slice along dim 0: a conv output channel, a
row of a linear layer) set `dᵢ ← dᵢ · ‖θᵢ‖ / (‖dᵢ‖ + 1e-10)`; zero the 1-D
tensors (biases, BatchNorm weights and biases). The loss is then read at
`θ + α d (+ β η)`, so α = 1 means "one weight-norm away" in every filter, and
slices of differently scaled networks compare fairly. BatchNorm running
statistics are left as trained.

Example:
    >>> import torch
    >>> from lrkit.landscape.nets import slice_1d
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> x, y = torch.randn(64, 2), torch.randn(64, 1)
    >>> s = slice_1d(model, torch.nn.functional.mse_loss, (x, y), steps=11)
    >>> float(s.alphas[5]), s.losses.shape, s.curvature() > 0
    (0.0, (11,), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit.errors import LandscapeError
from lrkit.landscape.surfaces import check_grid
from lrkit.optim import Optim
from lrkit.torch._tensors import all_finite, cpu_copy
from lrkit.torch.data import MinibatchOrder

if TYPE_CHECKING:
    from lrkit.lab.problems import Problem

Array = npt.NDArray[np.float64]
Batch = tuple[torch.Tensor, torch.Tensor]
Data = Batch | Iterable[Batch]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Direction = list[torch.Tensor]
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
MAX_DISTANCE = 1e3  # in filter-normalized units (1 = one weight norm per filter); beyond, float32 weights overflow
MAX_PATH_VALUES = 50_000_000  # checkpoints x parameters kept for the PCA (400 MB in float64, ~3 copies during the SVD)


@dataclasses.dataclass(frozen=True, eq=False)
class Slice1D:
    """The loss along one direction: `losses[k] = L(θ + alphas[k] d)`.

    Example:
        >>> s = Slice1D(np.linspace(-1, 1, 5), 3.0 * np.linspace(-1, 1, 5) ** 2 + 1.0)
        >>> round(s.curvature(), 6), s.loss_at_zero
        (6.0, 1.0)
    """

    alphas: Array
    losses: Array

    def curvature(self, radius: float | None = None) -> float:
        """`L''(0)` from a least-squares parabola through the points with `|α| <= radius` (default: a quarter of the range).

        At least five points nearest to 0 are used, so a coarse grid still gives a number.
        """
        span = float(np.max(np.abs(self.alphas)))
        r = span / 4 if radius is None else float(radius)
        near = np.flatnonzero(np.abs(self.alphas) <= r + 1e-12)
        if len(near) < 5:
            near = np.argsort(np.abs(self.alphas))[: min(5, len(self.alphas))]
        a, _, _ = np.polyfit(self.alphas[near], self.losses[near], 2)
        return float(2.0 * a)

    @property
    def loss_at_zero(self) -> float:
        """The loss at the trained weights (interpolated if 0 is not on the grid)."""
        return float(np.interp(0.0, self.alphas, self.losses))


@dataclasses.dataclass(frozen=True, eq=False)
class Slice2D:
    """The loss on a plane: `losses[i, j] = L(θ + alphas[j] d + betas[i] η)`.

    Example:
        >>> s = Slice2D(np.array([-1.0, 0.0, 1.0]), np.array([0.0, 1.0]), np.zeros((2, 3)))
        >>> s.losses.shape
        (2, 3)
    """

    alphas: Array
    betas: Array
    losses: Array


@dataclasses.dataclass(frozen=True, eq=False)
class PCAPath:
    """A training path projected on the first two principal directions of `{θ_t − θ_final}`.

    Attributes:
        coords: `(T, 2)` coordinates of every checkpoint (the final one at the origin).
        explained_variance: the fraction of the path's variance along each of the two directions.
        directions: the two unit directions, shaped like the parameters (usable by `slice_2d(directions=...)`).

    Example:
        >>> import numpy as np
        >>> path = PCAPath(coords=np.zeros((3, 2)), explained_variance=np.array([0.9, 0.1]), directions=([], []))
        >>> path.coords.shape, float(path.explained_variance.sum())
        ((3, 2), 1.0)
    """

    coords: Array
    explained_variance: Array
    directions: tuple[Direction, Direction]


# -- directions ------------------------------------------------------------------------------------
def filter_normalized_direction(model: torch.nn.Module, *, seed: int = 0, ignore: str | None = "biasbn") -> Direction:
    """A random direction in weight space, filter-normalized as in Li et al. (2018).

    `ignore="biasbn"` zeroes 1-D parameters (biases, BatchNorm); `ignore=None` copies them from the weights.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(3, 2)
        >>> d = filter_normalized_direction(lin)
        >>> bool(torch.allclose(d[0].norm(dim=1), lin.weight.norm(dim=1))), d[1].abs().sum().item()
        (True, 0.0)
    """
    params = _params(model, "filter_normalized_direction")
    if ignore not in ("biasbn", None):
        validate.fail("filter_normalized_direction", "ignore", "must be 'biasbn' or None", ignore, LandscapeError)
    gen = torch.Generator(device=params[0].device).manual_seed(validate.seed("filter_normalized_direction", "seed", seed, LandscapeError))
    out = []
    for p in params:
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device)
        if w.dim() <= 1:
            d = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
        else:
            flat_w, flat_d = w.reshape(len(w), -1), d.reshape(len(d), -1)
            scale = flat_w.norm(dim=1, keepdim=True) / (flat_d.norm(dim=1, keepdim=True) + 1e-10)
            d = (flat_d * scale).reshape(w.shape)
        out.append(d)
    return out


# -- slices ----------------------------------------------------------------------------------------
def slice_1d(
    model: torch.nn.Module,
    loss_fn: LossFn,
    data: Data,
    *,
    distance: float = 1.0,
    steps: int = 41,
    seed: int = 0,
    direction: Direction | None = None,
) -> Slice1D:
    """The loss along a filter-normalized random direction, for `α` in `[-distance, distance]`.

    Args:
        model: the trained model (its weights are restored afterwards).
        loss_fn: `loss_fn(model(x), y)` gives the mean loss of a batch.
        data: one `(x, y)` batch or an iterable of batches (e.g. a DataLoader), re-iterated at every point.
        distance: half-width of the slice in units of the direction.
        steps: the number of points (odd puts one at α = 0).
        seed: seed of the random direction.
        direction: a direction of your own, shaped like the parameters.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> x = torch.randn(16, 2)
        >>> s = slice_1d(m, torch.nn.functional.mse_loss, (x, m(x).detach()), steps=5)
        >>> round(float(s.losses[2]), 6)
        0.0
    """
    check_grid("slice_1d", "steps", steps, 2)
    reach = check_distance("slice_1d", distance)
    d = direction if direction is not None else filter_normalized_direction(model, seed=seed)
    _check_direction(model, d, "slice_1d")
    alphas = np.linspace(-reach, reach, steps)
    losses = np.asarray([_loss_at(model, loss_fn, data, [(float(a), d)]) for a in alphas], dtype=np.float64)
    return Slice1D(alphas, _finite_losses("slice_1d", losses, reach))


def slice_2d(
    model: torch.nn.Module,
    loss_fn: LossFn,
    data: Data,
    *,
    distance: float = 1.0,
    steps: int = 21,
    seed: int = 0,
    directions: tuple[Direction, Direction] | None = None,
) -> Slice2D:
    """The loss on the plane of two filter-normalized random directions (seeds `seed`, `seed + 1`), `steps` x `steps` points.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> x = torch.randn(16, 2)
        >>> s = slice_2d(m, torch.nn.functional.mse_loss, (x, torch.zeros(16, 1)), steps=3)
        >>> s.losses.shape
        (3, 3)
    """
    check_grid("slice_2d", "steps", steps, steps)
    reach = check_distance("slice_2d", distance)
    validate.integer("slice_2d", "seed", seed, LandscapeError, minimum=0, maximum=2**63 - 2)  # seed + 1 is the second direction's
    if directions is None:
        directions = (filter_normalized_direction(model, seed=seed), filter_normalized_direction(model, seed=seed + 1))
    d, e = directions
    _check_direction(model, d, "slice_2d")
    _check_direction(model, e, "slice_2d")
    grid = np.linspace(-reach, reach, steps)
    losses = np.array([[_loss_at(model, loss_fn, data, [(float(a), d), (float(b), e)]) for a in grid] for b in grid], dtype=np.float64)
    return Slice2D(grid, grid.copy(), _finite_losses("slice_2d", losses, reach))


def check_distance(func: str, distance: Any) -> float:
    """The half-width of a slice: a number > 0 and at most `MAX_DISTANCE`.

    Example:
        >>> check_distance("slice_1d", 0.5)
        0.5
    """
    reach = validate.positive(func, "distance", distance, LandscapeError)
    if reach > MAX_DISTANCE:
        validate.fail(func, "distance", f"must be at most {MAX_DISTANCE:g} (filter-normalized units: 1 is one weight norm)", reach,
                      LandscapeError)  # fmt: skip
    return reach


def _finite_losses(func: str, losses: Array, distance: float) -> Array:
    """The losses of a slice, when all are finite: a NaN or inf means the weights there (or the trained ones) overflow."""
    if not np.all(np.isfinite(losses)):
        why = f"must keep the loss finite on the slice ({np.count_nonzero(~np.isfinite(losses))} of {losses.size} points are not)"
        validate.fail(func, "distance", why, distance, LandscapeError)
    return losses


def _loss_at(model: torch.nn.Module, loss_fn: LossFn, data: Data, moves: Sequence[tuple[float, Direction]]) -> float:
    """The mean loss at `θ + Σ α d`, the weights restored afterwards (even on error)."""
    params = _params(model, "slice")
    saved = [p.detach().clone() for p in params]
    was_training = model.training
    try:
        with torch.no_grad():
            for alpha, d in moves:
                for p, dp in zip(params, d):
                    p.add_(dp.to(p.device, p.dtype), alpha=alpha)
            model.eval()
            return mean_loss(model, loss_fn, data)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        model.train(was_training)


def mean_loss(model: torch.nn.Module, loss_fn: LossFn, data: Data) -> float:
    """The loss over `data` (one batch, or batches weighted by their size), without gradients.

    Example:
        >>> import torch
        >>> batches = [(torch.ones(2, 1), torch.zeros(2, 1)), (torch.ones(1, 1), torch.ones(1, 1))]
        >>> round(mean_loss(torch.nn.Identity(), torch.nn.functional.mse_loss, batches), 6)
        0.666667
    """
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in _batches(data):
            total += float(loss_fn(model(x), y)) * len(x)
            count += len(x)
    if count == 0:
        validate.fail("mean_loss", "data", "must hold at least one sample", data, LandscapeError)
    return total / count


def _batches(data: Data) -> Iterator[Batch]:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        yield cast(Batch, data)
        return
    validate.instance("mean_loss", "data", data, LandscapeError, Iterable, "an (x, y) pair of tensors or an iterable of (x, y) pairs")
    yield from cast(Iterable[Batch], data)


# -- the PCA view of a path ------------------------------------------------------------------------
Checkpoint = torch.nn.Module | dict[str, torch.Tensor] | Sequence[torch.Tensor]


def pca_path(checkpoints: Sequence[Checkpoint]) -> PCAPath:
    """Project a training path on the first two principal directions of `{θ_t − θ_final}` (Li et al., sec. 7).

    Checkpoints are models, state dicts (BatchNorm running statistics are skipped) or
    lists of parameter tensors, oldest first; the last is the final point.

    Example:
        >>> import torch
        >>> path = [[torch.tensor([float(t), 2.0 * t, 0.01 * t * t])] for t in range(6)]
        >>> p = pca_path(path)
        >>> p.coords.shape, bool(p.explained_variance[0] > 0.99)
        ((6, 2), True)
    """
    if len(validate.sequence("pca_path", "checkpoints", checkpoints, LandscapeError)) < 3:
        validate.fail("pca_path", "checkpoints", "must be a list of at least 3 checkpoints", len(checkpoints), LandscapeError)
    tensors = [_checkpoint_tensors(c) for c in checkpoints]
    shapes = [t.shape for t in tensors[-1]]
    if any([t.shape for t in ts] != shapes for ts in tensors):
        validate.fail("pca_path", "checkpoints", "must all have the same parameter shapes", len(checkpoints), LandscapeError)
    flat = torch.stack([torch.cat([t.detach().reshape(-1).double().cpu() for t in ts]) for ts in tensors])
    if not bool(torch.isfinite(flat).all()):
        validate.fail("pca_path", "checkpoints", "must hold finite weights (a diverged run has no principal directions)", len(checkpoints),
                      LandscapeError)  # fmt: skip
    diffs = flat - flat[-1]
    _, s, vh = torch.linalg.svd(diffs - diffs.mean(0), full_matrices=False)
    dirs = vh[:2]
    if len(dirs) < 2 or float(s[0]) == 0.0:
        validate.fail("pca_path", "checkpoints", "must not all be equal (the path has no extent)", len(checkpoints), LandscapeError)
    variance = (s**2 / (s**2).sum()).numpy()[:2]
    coords = (diffs @ dirs.T).numpy()
    return PCAPath(coords, variance, (_unflatten(dirs[0], tensors[-1]), _unflatten(dirs[1], tensors[-1])))


def _checkpoint_tensors(c: Checkpoint) -> list[torch.Tensor]:
    if isinstance(c, torch.nn.Module):
        return [p.detach() for p in c.parameters()]
    if isinstance(c, dict):
        return [v for k, v in c.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not k.endswith(_BN_BUFFERS)]
    if isinstance(c, Sequence) and all(isinstance(t, torch.Tensor) for t in c):
        return list(c)
    validate.wrong_type("pca_path", "checkpoints", "must hold models, state dicts or lists of tensors", type(c).__name__, LandscapeError)


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> Direction:
    out, k = [], 0
    for t in like:
        out.append(flat[k : k + t.numel()].reshape(t.shape).to(t.dtype))
        k += t.numel()
    return out


# -- training with checkpoints ---------------------------------------------------------------------
def train_with_checkpoints(
    problem: Problem,
    lr: float,
    *,
    epochs: int | None = None,
    momentum: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[torch.nn.Module, list[dict[str, torch.Tensor]]]:
    """Train `problem`'s model with mini-batch SGD at a constant `lr`; a state dict (on the CPU) is kept at the start and after every epoch.

    The optimizer is `lrkit.Optim("sgd", momentum=momentum)`; the minibatches are lrkit's one order
    (`lrkit.torch.data.MinibatchOrder` for `seed`, the last partial batch kept). The model and the
    training data are moved to `device` (default: where the problem's data is). A run whose weights
    stop being finite (an lr far too high) raises a `LandscapeError` naming the lr and the epoch;
    the path may hold at most `MAX_PATH_VALUES` numbers (checkpoints x parameters).

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> model, path = train_with_checkpoints(get_problem("blobs"), 0.05, epochs=2)
        >>> len(path)
        3
    """
    func = "train_with_checkpoints"
    lr = validate.positive(func, "lr", lr, LandscapeError)
    epochs = validate.integer(func, "epochs", problem.epochs if epochs is None else epochs, LandscapeError)
    momentum = validate.probability(func, "momentum", momentum, LandscapeError)
    torch.manual_seed(validate.seed(func, "seed", seed, LandscapeError))
    x, y = problem.x_train.to(device), problem.y_train.to(device)
    model = problem.make_model().to(x.device)
    opt = Optim("sgd", momentum=momentum).to_torch(model.parameters(), lr)
    order = MinibatchOrder(len(x), seed)
    _check_path_size(func, model, epochs)
    path = [_snapshot(model)]
    for epoch in range(1, epochs + 1):
        for idx in order.epoch(problem.batch_size, x.device):
            opt.zero_grad()
            torch.autograd.backward(problem.loss(model(x[idx]), y[idx]))
            opt.step()
        if not all_finite(list(model.parameters())):
            why = f"must keep the training finite (the weights of {problem.name!r} are not finite after epoch {epoch}: try a smaller lr)"
            validate.fail(func, "lr", why, lr, LandscapeError)
        path.append(_snapshot(model))
    return model, path


def _check_path_size(func: str, model: torch.nn.Module, epochs: int) -> None:
    values = (epochs + 1) * sum(p.numel() for p in model.parameters())
    if values > MAX_PATH_VALUES:
        size = f"{epochs + 1} checkpoints x {values // (epochs + 1)} parameters"
        why = f"gives a path too large for memory ({size}; at most {MAX_PATH_VALUES} numbers)"
        validate.fail(func, "epochs", why, epochs, LandscapeError)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return cast(dict[str, torch.Tensor], cpu_copy(model.state_dict()))  # on the CPU: a long path costs no accelerator memory


# -- checks ----------------------------------------------------------------------------------------
def _params(model: Any, func: str) -> list[torch.Tensor]:
    validate.instance(func, "model", model, LandscapeError, torch.nn.Module, "a torch.nn.Module")
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    if not params:
        validate.fail(func, "model", "must have trainable parameters", type(model).__name__, LandscapeError)
    return params


def _check_direction(model: torch.nn.Module, d: Direction, func: str) -> None:
    shapes = [tuple(p.shape) for p in _params(model, func)]
    if not isinstance(d, (list, tuple)) or [tuple(t.shape) for t in d] != shapes:
        validate.fail(func, "direction", f"must be a list of tensors shaped like the parameters {shapes}", type(d).__name__, LandscapeError)
