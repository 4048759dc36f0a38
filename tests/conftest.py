"""Fixtures shared by the test files: the CLI runner, tiny models and data, and the plain reference run.

`reference_run` is the plain `torch.optim` + `lrkit.Scheduler` loop that every
batched trainer (the lab's population, the search) must reproduce member by member;
it draws its minibatches from `lrkit.torch.data`, the one order of the library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

import lrkit
from lrkit.cli import cli

# `make test` runs two pytest workers on two cores: one torch thread each, or the tiny models of the suite
# oversubscribe the cores and run many times slower (a test that needs threads sets them itself)
torch.set_num_threads(1)


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """`run_cli("study", "lr", ...)`: invoke lrkit's CLI in-process and return click's result."""

    def run(*args: str, **kwargs: Any) -> Result:
        return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)

    return run


@pytest.fixture
def tiny_linear() -> torch.nn.Linear:
    """A seeded Linear(2, 1): the smallest model with an optimizer to drive."""
    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)


@pytest.fixture
def sgd(tiny_linear: torch.nn.Linear) -> torch.optim.SGD:
    """Plain SGD at lr 0.1 over `tiny_linear`."""
    return torch.optim.SGD(tiny_linear.parameters(), lr=0.1)


@pytest.fixture
def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    """256 examples of a noisy linear map 4 -> 2 (generator seed 0)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    w = torch.randn(4, 2, generator=g)
    return x, x @ w + 0.1 * torch.randn(256, 2, generator=g)


def reference_run(
    make_model: Callable[[], torch.nn.Module],
    optimizer: lrkit.Optim,
    lr: lrkit.Schedule,
    data: Sequence[torch.Tensor],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    data_seed: int | None = None,
    momentum: lrkit.Schedule | None = None,
    plateau: Any = None,
) -> tuple[list[torch.Tensor], list[float]]:
    """The plain PyTorch run of one member: its final weights and its test loss after every epoch.

    `data` is `(x_train, y_train, x_test, y_test)`; the plateau, if any, is fed the test loss per epoch.
    """
    from lrkit.torch.data import MinibatchOrder

    x, y, x_test, y_test = data
    torch.manual_seed(seed)
    model = make_model()
    opt = optimizer.to_torch(model.parameters(), lr=1.0)
    sched = lrkit.Scheduler(opt, lr=lr, momentum=momentum, plateau=plateau)
    order = MinibatchOrder(len(x), seed if data_seed is None else data_seed)
    losses: list[float] = []
    for _ in range(epochs):
        model.train()
        for idx in order.epoch(batch_size):
            opt.zero_grad()
            loss(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            losses.append(float(loss(model(x_test), y_test)))
        if plateau is not None:
            sched.observe(losses[-1])
    return [p.detach().clone() for p in model.parameters()], losses


@pytest.fixture
def reference() -> Callable[..., tuple[list[torch.Tensor], list[float]]]:
    """`reference_run` as a fixture (test modules are imported by path, so they cannot import conftest)."""
    return reference_run


GLOO_HARNESS = """
import json, os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

{body}


def worker(rank, world, port, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        record = run(rank)
        with open(os.path.join(out, f"{{rank}}.json"), "w") as f:
            json.dump(record, f)
        dist.barrier()  # neither rank tears the group down while the other still uses it
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
"""


@pytest.fixture
def run_gloo(tmp_path: Any) -> Callable[[str], list[dict[str, Any]]]:
    """`run_gloo(body)`: run `body`'s `run(rank) -> dict` on 2 CPU processes of a gloo group; the ranks' dicts, in order."""
    import json
    import socket
    import subprocess
    import sys

    def launch(body: str) -> list[dict[str, Any]]:
        if not torch.distributed.is_available():
            pytest.skip("torch built without distributed")
        script = tmp_path / "gloo_run.py"
        script.write_text(GLOO_HARNESS.format(body=body))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]

    return launch
