"""Small built-in learning problems (generated locally, no downloads) and user problems.

A `Problem` bundles a train/test split, a model factory, the loss and the
problem's default training budget. Every built-in trains in a few seconds on
one CPU core, so a study can afford many members and seeds.

Example:
    >>> from lrkit.lab.problems import get_problem
    >>> p = get_problem("blobs")
    >>> tuple(p.x_train.shape), tuple(p.x_test.shape), p.num_classes, p.batch_size, p.epochs, p.lr
    ((500, 2), (500, 2), 3, 32, 200, 0.01)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lrkit import validate
from lrkit.errors import LabError
from lrkit.lab.factories import guarded, guarded_call, load_factory, takes_seed

if TYPE_CHECKING:
    import torch

TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A supervised problem: data, a model factory, the loss and a default budget.

    Args:
        name: the problem's name.
        task: "classification" (integer class targets, logits out) or "regression" (float targets, MSE).
        x_train, y_train, x_test, y_test: float32 inputs; int64 class indices or float32 targets.
        num_classes: the number of classes (0 for regression).
        batch_size: the minibatch size of the default training recipe.
        epochs: the default training budget, in epochs.
        lr: a sensible lr for plain SGD on this problem.
        make_model: builds a fresh model; the caller seeds (`torch.manual_seed`) before calling.

    Example:
        >>> import torch
        >>> p = get_problem("moons")
        >>> _ = torch.manual_seed(0)
        >>> out = p.make_model()(p.x_test)
        >>> tuple(out.shape), round(float(p.accuracy(out, p.y_test)), 1) <= 1.0
        ((500, 2), True)
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    batch_size: int
    epochs: int
    lr: float
    make_model: Callable[[], torch.nn.Module]

    def __post_init__(self) -> None:
        validate.choice("Problem", "task", self.task, LabError, TASKS)
        for field in ("batch_size", "epochs"):
            validate.integer("Problem", field, getattr(self, field), LabError)
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            sizes = (len(self.x_train), len(self.y_train), len(self.x_test), len(self.y_test))
            validate.fail("Problem", "y_train", "must have one target per input (train and test)", sizes, LabError)
        if not len(self.x_train) or not len(self.x_test):
            counts = (len(self.x_train), len(self.x_test))
            validate.fail("Problem", "x_train", "must hold at least one training and one test input", counts, LabError)

    def losses(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample losses (cross-entropy on logits, or squared error), shaped like `target`.

        Leading axes are kept: outputs (P, B, C) with targets (P, B) give (P, B), one row per population member.

        Example:
            >>> import torch
            >>> p = get_problem("blobs")
            >>> p.losses(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long)).shape
            torch.Size([2, 4])
        """
        import torch.nn.functional as F

        if self.task == "classification":
            return F.cross_entropy(output.movedim(-1, 1), target, reduction="none")
        return (_match(output, target) - target) ** 2

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy on logits (classification) or mean squared error (regression), over the last sample axis.

        Example:
            >>> import torch
            >>> p = get_problem("blobs")
            >>> round(float(p.loss(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))), 4)
            1.0986
        """
        return self.losses(output, target).mean(-1)

    def accuracy(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The fraction of inputs whose largest logit is the true class (classification only), over the last sample axis.

        Example:
            >>> import torch
            >>> p = get_problem("blobs")
            >>> round(float(p.accuracy(torch.eye(3), torch.tensor([0, 1, 1]))), 4)
            0.6667
        """
        if self.task != "classification":
            validate.fail(
                "Problem.accuracy", "task", "must be 'classification' (accuracy is undefined for regression)", self.task, LabError
            )
        return (output.argmax(-1) == target).float().mean(-1)


def _match(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A regression model's (N, 1) output compared with (N,) targets."""
    return output.squeeze(-1) if output.dim() == target.dim() + 1 and output.shape[-1] == 1 else output


# -- models ----------------------------------------------------------------------------------------
def mlp(sizes: Sequence[int]) -> torch.nn.Module:
    """An MLP with ReLU between layers, He-uniform hidden weights, Glorot-uniform output and zero biases (Keras's recipe).

    Example:
        >>> tuple(mlp([2, 50, 3])(__import__("torch").zeros(4, 2)).shape)
        (4, 3)
    """
    from torch import nn

    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        if last:
            nn.init.xavier_uniform_(linear.weight)
        else:
            nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear] if last else [linear, nn.ReLU()]
    model: torch.nn.Module = nn.Sequential(*layers)
    return model


def cnn2d(num_classes: int) -> torch.nn.Module:
    """A small CNN for 8x8 images (two 3x3 convolutions, one max-pool, a linear head).

    Example:
        >>> tuple(cnn2d(10)(__import__("torch").zeros(2, 1, 8, 8)).shape)
        (2, 10)
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, num_classes),
    )  # fmt: skip


def cnn1d(in_channels: int, length: int, num_classes: int) -> torch.nn.Module:
    """A small 1-D CNN (two strided convolutions, a linear head) for sequences of `length` steps.

    Example:
        >>> tuple(cnn1d(1, 40, 10)(__import__("torch").zeros(2, 1, 40)).shape)
        (2, 10)
    """
    from torch import nn

    out_len = ((length - 1) // 2 - 1) // 2 + 1
    return nn.Sequential(
        nn.Conv1d(in_channels, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * out_len, num_classes),
    )  # fmt: skip


def motif_net(vocab: int, num_classes: int) -> torch.nn.Module:
    """A 1-D convolution over one-hot tokens, global max-pooled: a motif detector.

    Example:
        >>> tuple(motif_net(6, 6)(__import__("torch").zeros(2, 6, 24)).shape)
        (2, 6)
    """
    from torch import nn

    return nn.Sequential(nn.Conv1d(vocab, 32, 3), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(32, num_classes))


# -- data ------------------------------------------------------------------------------------------
Arrays = tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]


def _halves(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> Arrays:
    n = len(x) // 2
    return x[:n], y[:n], x[n:], y[n:]


def _blobs(seed: int) -> Arrays:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=1000, centers=3, n_features=2, cluster_std=2, random_state=2)  # the classic, fixed
    return _halves(x, y)


def _moons(seed: int) -> Arrays:
    from sklearn.datasets import make_moons

    return _halves(*make_moons(n_samples=1000, noise=0.2, random_state=seed))


def _circles(seed: int) -> Arrays:
    from sklearn.datasets import make_circles

    return _halves(*make_circles(n_samples=1000, noise=0.1, factor=0.5, random_state=seed))


def _digits(seed: int) -> Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=0.3, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


@functools.lru_cache(maxsize=4)  # generation takes seconds; the MLP and CNN problems share the data
def _mnist1d(seed: int) -> Arrays:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 4000, seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # mnist1d seeds numpy's and Python's global generators: leave the caller's untouched
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return data["x"], data["y"], data["x_test"], data["y_test"]


def _regression(seed: int) -> Arrays:
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=1000, n_features=10, noise=0.5, random_state=seed)
    y = (y - y[:500].mean()) / y[:500].std()
    return _halves(x, y)


MOTIFS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _sequence(seed: int, n: int = 1200, length: int = 24, vocab: int = 6) -> Arrays:
    """Which ordering of tokens 0, 1, 2 is planted among background tokens 3..5: order matters, the set does not."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab, size=(n, length))
    y = rng.integers(0, len(MOTIFS), size=n)
    where = rng.integers(0, length - 2, size=n)
    rows = np.arange(n)
    for k in range(3):
        tokens[rows, where + k] = np.asarray(MOTIFS)[y, k]
    x = np.eye(vocab)[tokens].transpose(0, 2, 1)  # (n, vocab, length): channels first for Conv1d
    return _halves(x, y)


@dataclasses.dataclass(frozen=True)
class _Recipe:
    data: Callable[[int], Arrays]
    task: str
    num_classes: int
    batch_size: int
    epochs: int
    lr: float
    model: Callable[[], torch.nn.Module]
    shape: tuple[int, ...] = ()  # per-sample input shape, when not flat


_RECIPES: dict[str, _Recipe] = {
    "blobs": _Recipe(_blobs, "classification", 3, 32, 200, 0.01, functools.partial(mlp, (2, 50, 3))),
    "moons": _Recipe(_moons, "classification", 2, 32, 100, 0.1, functools.partial(mlp, (2, 50, 2))),
    "circles": _Recipe(_circles, "classification", 2, 32, 100, 0.1, functools.partial(mlp, (2, 50, 2))),
    "digits": _Recipe(_digits, "classification", 10, 32, 30, 0.05, functools.partial(mlp, (64, 64, 10))),
    "digits_cnn": _Recipe(_digits, "classification", 10, 32, 20, 0.05, functools.partial(cnn2d, 10), (1, 8, 8)),
    "mnist1d": _Recipe(_mnist1d, "classification", 10, 64, 60, 0.1, functools.partial(mlp, (40, 100, 100, 10))),
    "mnist1d_cnn": _Recipe(_mnist1d, "classification", 10, 64, 30, 0.1, functools.partial(cnn1d, 1, 40, 10), (1, 40)),
    "regression": _Recipe(_regression, "regression", 0, 32, 100, 0.01, functools.partial(mlp, (10, 64, 1))),
    "sequence": _Recipe(_sequence, "classification", 6, 32, 40, 0.1, functools.partial(motif_net, 6, 6), (6, 24)),
}
PROBLEMS: tuple[str, ...] = tuple(_RECIPES)
"""The built-in problems' names (`get_problem` builds each; all generated locally, no downloads).

Example:
    >>> PROBLEMS[:3]
    ('blobs', 'moons', 'circles')
"""


def get_problem(name: str, *, seed: int = 0) -> Problem:
    """A built-in problem by name, or a user's own given as "pkg.module:function".

    `seed` sets data generation where the classic set-up does not fix it (`blobs`
    always uses `random_state=2`). A user's function is called with `seed=seed`
    when it accepts a `seed` argument, and returns either a `Problem` or a pair
    `(make_model, (x_train, y_train, x_test, y_test))`.

    A user's function must be a plain `def` of the user's own module (not a builtin,
    a class or a standard-library function: `os:abort` is refused without being
    called) whose other arguments have defaults (`load_factory`). It runs inside a
    guard: whatever it raises, `SystemExit` included, is one `LabError` naming it
    (`guarded_call`); so is a failure of its `make_model`, which is built once and
    fed two training inputs here, before any training, to check its output shape.

    Example:
        >>> get_problem("sequence").x_train.shape[1:]
        torch.Size([6, 24])
        >>> try:
        ...     get_problem("nope")
        ... except LabError as e:
        ...     print(str(e)[:60])
        get_problem: parameter 'name' must be a built-in problem (bl
    """
    validate.instance("get_problem", "name", name, LabError, str, "a string")
    validate.seed("get_problem", "seed", seed, LabError)
    if ":" in name:
        return _user_problem(name, seed)
    if name not in _RECIPES:
        validate.fail("get_problem", "name", f"must be a built-in problem ({', '.join(PROBLEMS)}) or 'pkg.module:function'", name, LabError)
    return _built_in(name, seed)


@functools.lru_cache(maxsize=32)
def _built_in(name: str, seed: int) -> Problem:
    import torch

    recipe = _RECIPES[name]
    x_tr, y_tr, x_te, y_te = recipe.data(seed)
    target = torch.long if recipe.task == "classification" else torch.float32

    def inputs(x: npt.NDArray[Any]) -> torch.Tensor:
        t = torch.tensor(np.asarray(x, dtype=np.float32))
        return t.reshape(len(t), *recipe.shape) if recipe.shape else t

    return Problem(
        name=name, task=recipe.task,
        x_train=inputs(x_tr), y_train=torch.tensor(y_tr, dtype=target),
        x_test=inputs(x_te), y_test=torch.tensor(y_te, dtype=target),
        num_classes=recipe.num_classes, batch_size=recipe.batch_size, epochs=recipe.epochs, lr=recipe.lr, make_model=recipe.model,
    )  # fmt: skip


def _user_problem(target: str, seed: int) -> Problem:
    func = load_factory(target)
    made = guarded_call(func, target, {"seed": seed} if takes_seed(func) else None)
    if isinstance(made, Problem):
        problem = dataclasses.replace(made, make_model=_GuardedModel(made.make_model, target))
    else:
        problem = _from_pair(target, made)
    _probe_model(problem, target)
    return problem


def _probe_model(problem: Problem, target: str) -> None:
    """Build the user's model once and run two training inputs through it, so a bad model fails here, before any training."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the caller's random state is left as it was
        model = problem.make_model()
        x, y = problem.x_train[:2], problem.y_train[:2]
        out = guarded(lambda: model(x), target, "Problem", "make_model", LabError, "must build a model that takes x_train")
    if not isinstance(out, torch.Tensor):
        validate.fail("Problem", "make_model", f"must build a model that returns a tensor (got a {type(out).__name__})", target, LabError)
    ok = out.shape[-1] >= problem.num_classes if problem.task == "classification" else _match(out, y).shape == y.shape
    if out.dim() == 0 or out.shape[0] != len(x) or not ok:
        want = f"(N, {problem.num_classes}) logits" if problem.task == "classification" else "predictions shaped like y_train"
        got = f"got {tuple(out.shape)} for {len(x)} inputs"
        validate.fail("Problem", "make_model", f"must build a model giving {want} ({got})", target, LabError)


class _GuardedModel:
    """A user's model factory, called inside the guard; what it returns must be a `torch.nn.Module`."""

    def __init__(self, make: Callable[[], Any], target: str) -> None:
        self.make, self.target = make, target

    def __call__(self) -> torch.nn.Module:
        from torch import nn

        model = guarded_call(self.make, self.target, func="Problem", param="make_model")
        if not isinstance(model, nn.Module):
            why = f"must build a torch.nn.Module (got a {type(model).__name__})"
            validate.wrong_type("Problem", "make_model", why, self.target, LabError)
        return model


def _from_pair(name: str, made: Any) -> Problem:
    ok = isinstance(made, tuple) and len(made) == 2 and callable(made[0]) and isinstance(made[1], (tuple, list)) and len(made[1]) == 4
    if not ok:
        why = f"must return a Problem or (make_model, (x_train, y_train, x_test, y_test)), not a {type(made).__name__}"
        validate.fail("get_problem", "name", why, name, LabError)
    make_model, arrays = _GuardedModel(made[0], name), made[1]
    x_tr, y_tr, x_te, y_te = (_tensor(name, a) for a in arrays)
    if y_tr.dtype.is_floating_point:
        return Problem(name, "regression", x_tr.float(), y_tr.float(), x_te.float(), y_te.float(), 0, 32, 20, 0.01, make_model)
    classes = int(max(int(y_tr.max()), int(y_te.max()))) + 1
    return Problem(name, "classification", x_tr.float(), y_tr.long(), x_te.float(), y_te.long(), classes, 32, 20, 0.01, make_model)


def _tensor(name: str, array: Any) -> torch.Tensor:
    """A user's data array as a numeric tensor; anything else is the factory's wrong return value."""
    import torch

    try:
        t = torch.as_tensor(np.asarray(array))
    except (TypeError, ValueError, RuntimeError) as e:
        why = " ".join(str(e).split())[:160]
    else:
        if not t.is_complex():  # what torch cannot convert (text, objects) failed above
            return t
        why = f"dtype {t.dtype}"
    validate.fail("get_problem", "name", f"must return numeric arrays (x_train, y_train, x_test, y_test) ({why})", name, LabError)
