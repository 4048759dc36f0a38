"""`search_lr(engine="ray")` on a real local Ray (2 CPUs, one start for the module): the local engine's numbers.

Bit-identical where a shard holds the members of a local chunk (`shard_size` = the chunk size the local engine
takes under `max_memory`), equal to 1e-6 relative where the shards are cut otherwise; the same batches from a
shuffling DataLoader (its own generator, or torch's global one); halving's survivors decided in the driver;
a model factory that breaks on a worker is one FinderError line naming the members; the CLI on Ray.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrkit
from lrkit.errors import FinderError, LrkitWarning
from lrkit.torch.search import search_lr
from lrkit.torch.search.memory import member_bytes

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # with `--dist loadgroup`, this module's tests share one worker and one Ray


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray of 2 CPUs for the module; this module's functions travel to the workers by value."""
    from ray import cloudpickle

    from lrkit.engine import ray_session

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]  # a test module is not importable on a worker
    try:
        with ray_session("test_search_ray", None, FinderError, num_cpus=2):
            yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)  # type: ignore[no-untyped-call]


def _classes(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, x[:, :3].argmax(1)


def _images(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    return x, (x.mean((1, 2, 3)) > 0).long()


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))


def cnn_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2))


def _loader(x: torch.Tensor, y: torch.Tensor, batch: int, own: bool) -> DataLoader[Any]:
    """A shuffling loader: with its own generator, or drawing from torch's global one (which the search seeds)."""
    generator = torch.Generator().manual_seed(5) if own else None
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=generator)


def _same(a: lrkit.SearchResult, b: lrkit.SearchResult, *, exact: bool) -> None:
    """The same search: curves (bit for bit, or to 1e-6 relative), epochs, divergence, winner and member-steps."""
    if exact:
        np.testing.assert_array_equal(a.val_loss, b.val_loss)
    else:
        np.testing.assert_allclose(a.val_loss, b.val_loss, rtol=1e-6, atol=0)
    assert a.epochs_trained.tolist() == b.epochs_trained.tolist() and a.diverged.tolist() == b.diverged.tolist()
    assert (a.winner, a.member_steps, a.batched, a.candidates) == (b.winner, b.member_steps, b.batched, b.candidates)


MLP_KW: dict[str, Any] = {"epochs": 3, "lrs": [0.01, 0.1, 1.0, 1e3], "seeds": 2, "progress": False}


@pytest.mark.parametrize("own_generator", [True, False])
def test_mlp_on_ray_gives_the_local_numbers_bit_for_bit_where_shards_are_local_chunks(own_generator: bool) -> None:
    x, y = _classes()
    loader, val = _loader(x, y, 32, own_generator), _classes(seed=1)
    one = member_bytes(mlp(), lrkit.Optim("sgd", momentum=0.9), F.cross_entropy, (x[:32], y[:32]))
    local = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, max_memory=2 * one + 1, **MLP_KW)  # chunks of 2
    on_ray = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, engine="ray", shard_size=2, **MLP_KW)
    assert local.diverged.any() and not local.diverged.all()  # lr 1e3 diverges: members leave mid-shard
    _same(on_ray, local, exact=True)
    # max_memory is per shard on Ray: it caps the default shard size (2), and a larger shard trains in chunks of 2 on its worker
    for size in (None, 8):
        fitted = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, engine="ray", shard_size=size, max_memory=2 * one + 1,
                           **MLP_KW)  # fmt: skip
        _same(fitted, local, exact=True)
    # shards cut across the local chunks (3 members each against one population of 8): the same to 1e-6
    whole = search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, **MLP_KW)
    _same(search_lr(mlp, "sgd(momentum=0.9)", F.cross_entropy, loader, val, engine="ray", shard_size=3, **MLP_KW), whole, exact=False)


def test_a_torch_func_model_with_batchnorm_on_ray_equals_local() -> None:
    x, y = _images()
    loader, val = _loader(x, y, 16, own=False), _images(seed=1)
    kw: dict[str, Any] = {"epochs": 2, "lrs": [0.01, 0.1], "seeds": 2, "progress": False}
    local = search_lr(cnn_bn, "adam", F.cross_entropy, loader, val, metric="accuracy", **kw)
    on_ray = search_lr(cnn_bn, "adam", F.cross_entropy, loader, val, metric="accuracy", engine="ray", shard_size=4, **kw)
    _same(on_ray, local, exact=True)  # one shard of all 4 members: the local population itself
    assert on_ray.metric is not None and local.metric is not None
    np.testing.assert_array_equal(on_ray.metric, local.metric)
    split = search_lr(cnn_bn, "adam", F.cross_entropy, loader, val, metric="accuracy", engine="ray", shard_size=1, **kw)
    _same(split, local, exact=False)


def test_halving_on_ray_keeps_the_local_survivors_and_numbers() -> None:
    x, y = _classes()
    loader, val = _loader(x, y, 32, own=True), _classes(seed=1)
    kw: dict[str, Any] = {"epochs": 9, "lrs": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], "seeds": 2, "budget": "halving", "progress": False}
    local = search_lr(mlp, "adam", F.cross_entropy, loader, val, **kw)
    assert local.dropped.sum() == 5  # the rungs at 1 and 3 epochs keep 2 candidates, then 1
    on_ray = search_lr(mlp, "adam", F.cross_entropy, loader, val, engine="ray", shard_size=12, **kw)
    _same(on_ray, local, exact=True)  # one shard that shrinks as the local population does
    # the default size: 4 shards of 3 on 2 workers; the 4 survivors of the first rung come back and go out one per shard
    spread = search_lr(mlp, "adam", F.cross_entropy, loader, val, engine="ray", **kw)
    _same(spread, local, exact=False)
    assert spread.dropped.tolist() == local.dropped.tolist()


class Branchy(nn.Module):
    """A forward with data-dependent control flow: torch.func cannot batch it, so its members train as plain runs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.a(x) if float(self.a.weight.detach().sum()) > 0 else self.b(x)
        return out


def test_plain_runs_on_ray_with_halving_are_the_local_ones_exactly() -> None:
    x, y = _classes()
    loader, val = _loader(x, y, 32, own=False), _classes(seed=1)
    kw: dict[str, Any] = {"epochs": 3, "lrs": [0.001, 0.01, 0.1, 1.0], "budget": "halving", "progress": False}
    with pytest.warns(LrkitWarning, match="cannot be batched"):
        local = search_lr(Branchy, "adam", F.cross_entropy, loader, val, **kw)
    with pytest.warns(LrkitWarning, match="cannot be batched"):
        on_ray = search_lr(Branchy, "adam", F.cross_entropy, loader, val, engine="ray", shard_size=1, **kw)
    assert not on_ray.batched and local.dropped.sum() == 2
    _same(on_ray, local, exact=True)  # a plain run's arithmetic does not depend on its shard


class BreaksOnWorkers:
    """A model factory that works in the driver and fails anywhere else (a weights file only the driver has)."""

    def __init__(self) -> None:
        self.driver = os.getpid()

    def __call__(self) -> nn.Module:
        if os.getpid() != self.driver:
            raise FileNotFoundError("weights.pt is not on this machine")
        return mlp()


def test_a_factory_that_fails_on_the_workers_is_one_line_naming_the_members() -> None:
    x, y = _classes()
    with pytest.raises(FinderError) as caught:
        search_lr(BreaksOnWorkers(), "sgd", F.cross_entropy, [(x, y)], (x, y), epochs=1, lrs=[0.1, 0.2], seeds=2, progress=False,
                  engine="ray", shard_size=4)  # fmt: skip
    message = str(caught.value)
    assert message == "search_lr: the shard of members 0-3 failed on Ray (FileNotFoundError: weights.pt is not on this machine)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "spark"}, "search_lr: parameter 'engine' must be one of 'local', 'ray', got 'spark'"),
        ({"address": "auto"}, "search_lr: parameter 'address' joins a Ray cluster, so it needs engine='ray', got 'auto'"),
        ({"engine": "ray", "address": " "}, "search_lr: parameter 'address' must be None (a local Ray), 'auto'"),
        ({"shard_size": 4}, "search_lr: parameter 'shard_size' cuts a population into Ray tasks, so it needs engine='ray', got 4"),
        ({"engine": "ray", "shard_size": 0}, "search_lr: parameter 'shard_size' must be a positive integer, got 0"),
        ({"engine": "ray", "num_gpus": -1}, "search_lr: parameter 'num_gpus' must be >= 0, got -1"),
        ({"engine": "ray", "num_cpus": 64}, "search_lr: parameter 'num_cpus' must fit one node of the cluster (its nodes have at most 2"),
    ],
)  # fmt: skip
def test_bad_engine_settings_name_search_lr_and_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    x, y = _classes()
    with pytest.raises(FinderError) as caught:
        search_lr(mlp, "sgd", F.cross_entropy, [(x, y)], (x, y), epochs=1, lrs=[0.1], progress=False, **kwargs)
    assert str(caught.value).startswith(message), caught.value


@pytest.mark.slow
def test_the_cli_on_ray_writes_the_local_search(tmp_path: Path, run_cli: Any) -> None:
    args = ("search", "--problem", "blobs", "--epochs", "2", "--lrs", "0.01,0.1,1.0", "--seeds", "2")
    local = run_cli(*args, "--out", tmp_path / "local")
    on_ray = run_cli(*args, "--out", tmp_path / "ray", "--engine", "ray", "--shard-size", "3", "--cpus-per-shard", "1")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    saved = [json.loads((tmp_path / where / "search.json").read_text()) for where in ("local", "ray")]
    for one in saved:
        one.pop("wall_seconds")
    np.testing.assert_allclose(np.array(saved[1].pop("val_loss"), float), np.array(saved[0].pop("val_loss"), float), rtol=1e-6)
    assert saved[1] == saved[0]
    assert (tmp_path / "ray" / "schedule.txt").read_text() == (tmp_path / "local" / "schedule.txt").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--address", "auto"), "lrkit search: parameter '--address' joins a Ray cluster, so it needs --engine ray, got 'auto'"),
        (("--shard-size", "4"), "lrkit search: parameter '--shard-size' cuts a population into Ray tasks, so it needs --engine ray"),
        (("--engine", "spark"), "Invalid value for '--engine'"),
    ],
)  # fmt: skip
def test_cli_engine_mistakes_exit_2_before_any_work(args: tuple[str, ...], message: str, tmp_path: Path, run_cli: Any) -> None:
    res = run_cli("search", "--out", tmp_path, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output.strip().splitlines()[-1] and not any(tmp_path.iterdir()), res.output
