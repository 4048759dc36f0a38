"""`find_lr` under torch.distributed: 2 CPU processes (gloo) must agree on every recorded value and the suggestion."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import pytest

BODY = textwrap.dedent(
    """
    from torch import nn

    from lrkit.torch.finder import find_lr


    def rank_data(rank):
        gen = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
        x = torch.randn(64, 4, generator=gen)
        y = (x[:, 0] > x[:, 1]).long()
        return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


    def run(rank):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        first = float(nn.functional.cross_entropy(model(rank_data(rank)[0][0]), rank_data(rank)[0][1]))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        result = find_lr(model, opt, nn.functional.cross_entropy, rank_data(rank), start=1e-4, end=1e3, steps=40)
        return result.to_dict() | {"first_local": first}
    """
)


def test_two_gloo_ranks_stop_together_and_agree(run_gloo: Callable[[str], list[dict[str, Any]]]) -> None:
    r0, r1 = run_gloo(BODY)
    assert r0["first_local"] != r1["first_local"]  # the ranks' own losses differ ...
    assert r0["losses"][0] == pytest.approx((r0["first_local"] + r1["first_local"]) / 2, rel=1e-6)  # ... the recorded one is their mean
    for key in ("lrs", "losses", "stopped_at", "stop_reason", "suggestion", "suggestions"):
        assert r0[key] == r1[key], key
    assert r0["stop_reason"] == "diverged" and r0["suggestion"] is not None
