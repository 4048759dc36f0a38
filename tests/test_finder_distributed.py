"""`find_lr` under torch.distributed: 2 CPU processes (gloo) must agree on every recorded value and the suggestion."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch import nn

    from lrkit.torch.finder import find_lr


    def rank_data(rank):
        gen = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
        x = torch.randn(64, 4, generator=gen)
        y = (x[:, 0] > x[:, 1]).long()
        return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


    def worker(rank, world, port, out):
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)
        try:
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            first = float(nn.functional.cross_entropy(model(rank_data(rank)[0][0]), rank_data(rank)[0][1]))
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            result = find_lr(model, opt, nn.functional.cross_entropy, rank_data(rank), start=1e-4, end=1e3, steps=40)
            record = result.to_dict() | {"first_local": first}
            with open(os.path.join(out, f"{rank}.json"), "w") as f:
                json.dump(record, f)
        finally:
            dist.destroy_process_group()


    if __name__ == "__main__":
        mp.spawn(worker, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_ranks_stop_together_and_agree(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), str(free_port()), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1))
    assert r0["first_local"] != r1["first_local"]  # the ranks' own losses differ ...
    assert r0["losses"][0] == pytest.approx((r0["first_local"] + r1["first_local"]) / 2, rel=1e-6)  # ... the recorded one is their mean
    for key in ("lrs", "losses", "stopped_at", "stop_reason", "suggestion", "suggestions"):
        assert r0[key] == r1[key], key
    assert r0["stop_reason"] == "diverged" and r0["suggestion"] is not None
