"""`lrkit.search_lr`: each candidate equals the plain torch.optim + lrkit.Scheduler run; bad input fails before training."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrkit
from lrkit.errors import FinderError, LrkitWarning
from lrkit.search.grid import default_lrs, halving_rungs, shaped
from lrkit.torch.search import search_lr


def _classes(n: int = 192, d: int = 6, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, :c].argmax(1)).long()


def _images(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return x, (x.mean((1, 2, 3)) > 0).long()


def _loader(x: torch.Tensor, y: torch.Tensor, batch: int = 32, seed: int = 3) -> DataLoader[Any]:
    """A shuffling loader with its own generator; `_rewind` puts that generator back to its start (as the search leaves it)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    loader.start = loader.generator.get_state()  # type: ignore[attr-defined]
    return loader


def _rewind(loader: Any) -> Any:
    if hasattr(loader, "start"):
        loader.generator.set_state(loader.start)
    return loader


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def cnn_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 2))


def regressor() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1))


def plain_run(
    make_model: Callable[[], nn.Module], optimizer: str, loss_fn: Any, loader: Any, val: tuple[torch.Tensor, torch.Tensor],
    spec: str, seed: int, epochs: int, weight_decay: float | None = None,
) -> list[float]:  # fmt: skip
    """The reference: torch.manual_seed, make_model, torch.optim, lrkit.Scheduler; val loss after each epoch in eval mode."""
    torch.manual_seed(seed)
    model = make_model()
    optim = lrkit.Optim.parse(optimizer)
    if weight_decay is not None:
        optim = dataclasses.replace(optim, weight_decay=weight_decay)
    schedule = lrkit.parse(spec)
    opt = optim.to_torch(model.parameters(), lr=schedule(0))
    sched = lrkit.Scheduler(opt, lr=schedule)
    curve = []
    _rewind(loader)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            curve.append(float(loss_fn(model(val[0]), val[1])))
    return curve


def _equal_to_plain(result: lrkit.SearchResult, make_model: Any, loss_fn: Any, loader: Any, val: Any, rtol: float = 2e-4) -> int:
    """Every non-diverged member's curve equals its plain run; returns how many were compared."""
    compared = 0
    for k, cand in enumerate(result.candidates):
        for s, seed in enumerate(result.seeds):
            if result.diverged[k, s]:
                continue
            decay = cand["weight_decay"] if len({c["weight_decay"] for c in result.candidates}) > 1 else None
            ref = plain_run(make_model, result.optimizer, loss_fn, loader, val, cand["spec"], seed, result.epochs, decay)
            np.testing.assert_allclose(result.val_loss[k, s], ref, rtol=rtol, atol=1e-6, err_msg=f"{cand} seed {seed}")
            compared += 1
    return compared


@pytest.mark.parametrize(
    ("optimizer", "shapes"),
    [("sgd(momentum=0.9)", ("constant", "cosine")), ("adam", ("one_cycle",)), ("nesterov(momentum=0.8)", ("wsd", "step_decay"))],
)
def test_mlp_candidates_equal_plain_runs(optimizer: str, shapes: tuple[str, ...]) -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    r = search_lr(mlp, optimizer, F.cross_entropy, loader, val, epochs=3, lrs=[0.003, 0.03, 0.3], shapes=shapes, seeds=2, progress=False)
    assert r.batched and r.val_loss.shape == (3 * len(shapes), 2, 3)
    assert _equal_to_plain(r, mlp, F.cross_entropy, loader, val) == 6 * len(shapes)


def test_a_loss_lrkit_does_not_know_runs_under_vmap_and_equals_plain_runs() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)

    def smoothed(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target, label_smoothing=0.1)

    r = search_lr(mlp, "adamw", smoothed, loader, val, epochs=2, lrs=[1e-3, 1e-2], weight_decays=[0.0, 0.1], progress=False)
    assert [(c["lr"], c["weight_decay"]) for c in r.candidates] == [(1e-3, 0.0), (1e-2, 0.0), (1e-3, 0.1), (1e-2, 0.1)]
    assert _equal_to_plain(r, mlp, smoothed, loader, val) == 4
    assert not np.allclose(r.val_loss[1], r.val_loss[3])  # the weight decay was applied per member


def test_cnn_with_batchnorm_equals_plain_runs_with_running_statistics_per_member() -> None:
    x, y = _images()
    loader, val = _loader(x, y, batch=16), _images(seed=1)
    r = search_lr(cnn_bn, "sgd(momentum=0.9)", F.cross_entropy, loader, val, epochs=2, lrs=[0.01, 0.1], seeds=2, progress=False)
    assert r.batched
    # eval mode reads each member's own running statistics: a shared or untouched buffer would not match
    assert _equal_to_plain(r, cnn_bn, F.cross_entropy, loader, val) == 4


@pytest.mark.parametrize("loss", ["mse", "problem"])
def test_regression_candidates_equal_plain_runs(loss: str) -> None:
    from lrkit.lab.problems import get_problem

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = x[:, 0] * 2 - x[:, 1]
    if loss == "mse":  # targets (N, 1) like the outputs: run under vmap with F.mse_loss itself
        y, loss_fn = y[:, None], F.mse_loss
    else:  # a built-in regression problem's loss: (N, 1) outputs against (N,) targets, differentiated by hand
        loss_fn = get_problem("regression").loss
    loader, val = _loader(x, y), (x[:64], y[:64])
    r = search_lr(regressor, "sgd", loss_fn, loader, val, epochs=3, lrs=[0.01, 0.05], shapes=("linear",), progress=False)
    assert _equal_to_plain(r, regressor, loss_fn, loader, val) == 2
    assert r.val_loss[1, 0, -1] < r.val_loss[1, 0, 0]


def test_dropout_is_independent_per_member_and_matches_plain_runs_in_distribution() -> None:
    x, y = _classes(n=256)
    val = _classes(n=256, seed=1)
    loader = _loader(x, y, batch=64)

    def dropped() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))

    one = lrkit.constant(1.0)
    r = search_lr(dropped, "sgd", F.cross_entropy, loader, val, epochs=3, lrs=[0.2], shapes=("constant", one), seeds=8, progress=False)
    same_schedule = r.val_loss[0, :, -1], r.val_loss[1, :, -1]
    assert not np.allclose(*same_schedule)  # same lr, same inits: only the dropout masks differ
    plain = [plain_run(dropped, "sgd", F.cross_entropy, loader, val, "constant(value=0.2)", s, 3)[-1] for s in range(8)]
    batched = np.concatenate(same_schedule)
    spread = math.hypot(np.std(plain) / math.sqrt(8), np.std(batched) / math.sqrt(16))
    assert abs(np.mean(batched) - np.mean(plain)) < 4 * spread


class Branchy(nn.Module):
    """A forward with data-dependent control flow: torch.func cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) if float(self.a.weight.detach().sum()) > 0 else self.b(x)


def test_a_module_that_cannot_be_batched_runs_plain_runs_with_a_warning() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    with pytest.warns(LrkitWarning, match="cannot be batched"):
        r = search_lr(Branchy, "adam", F.cross_entropy, loader, val, epochs=2, lrs=[1e-3, 1e-1], progress=False)
    assert not r.batched and r.warnings
    np.testing.assert_array_equal(r.val_loss[:, 0], [plain_run(Branchy, "adam", F.cross_entropy, loader, val, c["spec"], 0, 2)
                                                     for c in r.candidates])  # fmt: skip


def test_the_winning_schedule_replayed_reproduces_the_reported_loss() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    kw: dict[str, Any] = {"epochs": 3, "lrs": [0.01, 0.1, 1.0], "shapes": ("cosine",), "progress": False}
    r = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, **kw)
    replay = plain_run(mlp, r.optimizer, F.cross_entropy, loader, val, repr(r.schedule), r.seeds[0], 3)
    assert r.schedule == shaped("cosine", r.lr, 3 * len(loader))
    assert replay[-1] == pytest.approx(r.scores[r.winner], rel=2e-4)
    assert r.scores[r.winner] == np.nanmin(r.scores)


def test_diverging_members_leave_at_once_and_the_rng_is_given_back() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    generator_before = loader.generator.get_state()
    r = search_lr(mlp, "sgd", F.cross_entropy, loader, val, epochs=4, lrs=[0.05, 1e3, 1e6], progress=False)
    assert r.diverged[:, 0].tolist() == [False, True, True]
    assert r.epochs_trained[:, 0].tolist() == [4, 0, 0]  # both diverged within their first epoch
    assert r.member_steps < 4 * len(loader) + 2 * len(loader)
    assert torch.equal(torch.get_rng_state(), before) and torch.equal(loader.generator.get_state(), generator_before)


def test_chunks_give_the_numbers_of_one_population() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    kw: dict[str, Any] = {"epochs": 2, "lrs": [0.01, 0.03, 0.1], "seeds": 2, "progress": False}
    whole = search_lr(mlp, "adam", F.cross_entropy, loader, val, **kw)
    from lrkit.torch.search.memory import member_bytes

    one = member_bytes(mlp(), lrkit.Optim("adam"), F.cross_entropy, (x[:32], y[:32]))
    chunked = search_lr(mlp, "adam", F.cross_entropy, loader, val, max_memory=2 * one + 1, **kw)
    np.testing.assert_allclose(chunked.val_loss, whole.val_loss, rtol=1e-6)
    with pytest.raises(FinderError, match=r"max_memory.*room for one member"):
        search_lr(mlp, "adam", F.cross_entropy, loader, val, max_memory=one // 2, **kw)


def test_halving_drops_the_worse_candidates_at_rungs_and_costs_less() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    lrs = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 1e-5]
    full = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, epochs=9, lrs=lrs, progress=False)
    half = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, epochs=9, lrs=lrs, budget="halving", progress=False)
    assert halving_rungs(9) == [1, 3, 9]
    trained = sorted(half.epochs_trained[~half.diverged.any(1), 0].tolist())
    alive = int((~half.diverged.any(1)).sum())
    assert trained.count(9) == math.ceil(math.ceil(alive / 3) / 3) and min(trained) == 1
    assert half.member_steps < 0.5 * full.member_steps
    np.testing.assert_allclose(half.val_loss[half.winner, 0], full.val_loss[half.winner, 0], rtol=1e-5)  # the same member


def test_a_torch_optimizer_is_read_and_a_metric_judges() -> None:
    x, y = _classes()
    loader, val = _loader(x, y), _classes(seed=1)
    opt = torch.optim.RMSprop(mlp().parameters(), lr=123.0, alpha=0.9, momentum=0.5)
    r = search_lr(mlp, opt, F.cross_entropy, loader, val, epochs=2, lrs=[1e-3, 1e-2], metric="accuracy", progress=False)
    assert r.optimizer == "rmsprop(momentum=0.5, beta2=0.9)" and r.judged_by == "metric" and r.metric_name == "accuracy"
    assert r.metric is not None and ((r.metric >= 0) & (r.metric <= 1)).all()
    assert r.winner == int(np.argmax(r.metric[:, 0, -1]))


def test_default_grid_spans_the_issue_range() -> None:
    lrs = default_lrs()
    assert lrs[0] == 1e-6 and lrs[-1] == 10.0 and max(b / a for a, b in itertools.pairwise(lrs)) < 1.8


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> nn.Module:
        self.calls += 1
        return mlp()


def _bad_calls() -> list[tuple[str, dict[str, Any], str]]:
    x, y = _classes()
    ok = [(x[:32], y[:32])]
    return [
        ("no candidates", {"lrs": []}, "lrs"),
        ("zero lr", {"lrs": [0.1, 0.0]}, "lrs"),
        ("negative lr", {"lrs": [-1e-3]}, "lrs"),
        ("nan lr", {"lrs": [float("nan")]}, "lrs"),
        ("repeated lr", {"lrs": [0.1, 0.1]}, "lrs"),
        ("epochs 0", {"epochs": 0}, "epochs"),
        ("empty loader", {"train_data": []}, "train_data"),
        ("one-shot iterator", {"train_data": iter(ok)}, "train_data"),
        ("not batches", {"train_data": [1, 2]}, "train_data"),
        ("unknown shape", {"shapes": ("zigzag",)}, "shapes"),
        ("no shapes", {"shapes": ()}, "shapes"),
        ("unsupported optimizer", {"optimizer": torch.optim.LBFGS(mlp().parameters())}, "optimizer"),
        ("unknown optimizer name", {"optimizer": "lion"}, "optimizer"),
        ("seeds 0", {"seeds": 0}, "seeds"),
        ("budget", {"budget": "some"}, "budget"),
        ("metric", {"metric": 3}, "metric"),
        ("weight decay", {"weight_decays": [-0.1]}, "weight_decays"),
    ]


@pytest.mark.parametrize(("case", "change", "param"), _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_input_is_a_clear_error_before_any_training(case: str, change: dict[str, Any], param: str) -> None:
    x, y = _classes()
    factory = _Counter()
    kw: dict[str, Any] = {"optimizer": "sgd", "train_data": [(x[:32], y[:32])], "epochs": 1, "lrs": [0.1], "progress": False, **change}
    with pytest.raises(FinderError, match=f"search_lr: parameter '{param}'"):
        search_lr(factory, kw.pop("optimizer"), F.cross_entropy, kw.pop("train_data"), (x, y), **kw)
    assert factory.calls == 0  # refused before a model was built


@pytest.mark.parametrize(
    ("make_model", "loss_fn", "param"),
    [
        (lambda: nn.Sequential(nn.Linear(6, 3)).requires_grad_(False), F.cross_entropy, "make_model"),
        (lambda: "not a module", F.cross_entropy, "make_model"),
        (mlp, lambda out, t: F.cross_entropy(out, t, reduction="none"), "loss_fn"),
        (mlp, lambda out, t: out.sum() * float("nan"), "loss_fn"),
    ],
    ids=["no trainable parameters", "not a module", "loss not a scalar", "loss not finite"],
)
def test_bad_models_and_losses_are_refused_before_training(make_model: Any, loss_fn: Any, param: str) -> None:
    x, y = _classes()
    with pytest.raises(FinderError, match=f"search_lr: parameter '{param}'"):
        search_lr(make_model, "sgd", loss_fn, [(x[:32], y[:32])], (x, y), epochs=1, lrs=[0.1], progress=False)


def test_the_user_sees_no_warning_for_a_batchable_model() -> None:
    x, y = _classes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search_lr(mlp, "sgd", F.cross_entropy, [(x, y)], (x, y), epochs=1, lrs=[0.1], progress=False)
