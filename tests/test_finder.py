"""`lrkit.find_lr`: the transaction, step counting, stopping, groups, inputs and the result object."""

from __future__ import annotations

import hashlib
import math
import pickle
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.torch.finder import LRFinderResult, find_lr


def data(n: int = 64, batch: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))


def state_hash(model: nn.Module, opt: torch.optim.Optimizer, scaler: Any = None) -> str:
    """Every bit the test promises to keep: params, grads, buffers, modes, optimizer, scaler, RNG."""
    h = hashlib.sha256()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(name.encode() + t.detach().cpu().numpy().tobytes())
    for p in model.parameters():
        h.update(b"none" if p.grad is None else p.grad.cpu().numpy().tobytes())
    h.update(str([m.training for m in model.modules()]).encode())
    sd = opt.state_dict()
    for pid, st in sorted(sd["state"].items()):
        for k, v in sorted(st.items()):
            h.update(f"{pid}{k}".encode() + (v.cpu().numpy().tobytes() if torch.is_tensor(v) else repr(v).encode()))
    h.update(repr(sd["param_groups"]).encode())
    if scaler is not None:
        h.update(repr(scaler.state_dict()).encode())
    h.update(pickle.dumps(random.getstate()) + pickle.dumps(np.random.get_state()) + torch.get_rng_state().numpy().tobytes())
    return h.hexdigest()


def warmed_up(model: nn.Module) -> torch.optim.Optimizer:
    """An Adam with state and two param groups, and grads left in place: a mid-training situation."""
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-3}, {"params": model[4].parameters(), "lr": 1e-4},
                            {"params": model[1].parameters(), "lr": 1e-3}])  # fmt: skip
    for x, y in data()[:2]:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return opt


def test_restores_everything_after_returning() -> None:
    model = net()
    opt = warmed_up(model)
    model.eval()
    model[3].train()  # mixed modes must come back as they were
    before = state_hash(model, opt)
    result = find_lr(model, opt, nn.functional.cross_entropy, data(), start=1e-5, end=1.0, steps=20)
    assert len(result.lrs) > 10
    assert state_hash(model, opt) == before


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_restores_everything_after_raising_mid_test(error: type[BaseException]) -> None:
    model = net()
    opt = warmed_up(model)
    before = state_hash(model, opt)
    calls = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 7:
            raise error("stop")
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(error):
        find_lr(model, opt, loss_fn, data(), steps=20)
    assert len(calls) == 7
    assert state_hash(model, opt) == before


def test_restores_a_grad_scaler() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=2)
    before = state_hash(model, opt, scaler)
    find_lr(model, opt, nn.functional.cross_entropy, data(), steps=12, scaler=scaler)
    assert state_hash(model, opt, scaler) == before and scaler._scale is None


def lr_probe(f: Callable[[float], float]) -> tuple[nn.Module, torch.optim.Optimizer, Callable[..., torch.Tensor]]:
    """A model whose loss is a known function of the current lr: the test's outcome is exact."""
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        return f(opt.param_groups[0]["lr"]) + 0.0 * m.weight.sum()

    return model, opt, step_fn


def bowl(lr: float) -> float:
    t = math.log10(lr) + 2.0
    return t**2 if t < 0 else 100.0**t - 1.0  # falls to its best at 1e-2, then blows up


@pytest.mark.parametrize("transform", [lambda v: v, lambda v: v - 100.0, lambda v: 1000.0 * v, lambda v: 1e-3 * v - 5.0])
def test_divergence_stop_is_the_same_for_negative_and_scaled_losses(transform: Callable[[float], float]) -> None:
    model, opt, step_fn = lr_probe(bowl)
    reference = find_lr(model, opt, None, [0], start=1e-6, end=10, steps=60, step_fn=step_fn)
    model, opt, step_fn = lr_probe(lambda lr: transform(bowl(lr)))
    result = find_lr(model, opt, None, [0], start=1e-6, end=10, steps=60, step_fn=step_fn)
    assert reference.stop_reason == result.stop_reason == "diverged"
    assert result.stopped_at == reference.stopped_at < 59
    assert result.suggestions == reference.suggestions
    assert result.lrs[-1] > 1e-2  # it stopped after the minimum, not on the way down


def test_stops_at_once_on_nan_and_inf() -> None:
    for bad in (math.nan, math.inf):
        model, opt, step_fn = lr_probe(lambda lr, bad=bad: bad if lr > 1e-2 else 1.0 / (1.0 + lr))
        result = find_lr(model, opt, None, [0], start=1e-5, end=10, steps=40, step_fn=step_fn, diverge=None)
        assert result.stop_reason == "non-finite"
        assert result.lrs[-1] > 1e-2 >= result.lrs[-2]
        assert not math.isfinite(result.losses[-1])


def test_lr_advances_once_per_update_with_accumulation() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen: list[float] = []

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(opt.param_groups[0]["lr"])
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    result = find_lr(model, opt, None, data(), start=1e-4, end=1e-2, steps=10, accumulation_steps=3, step_fn=step_fn, diverge=None)
    ramp = lrkit.exponential(start=1e-4, rate=100 ** (1 / 9)).values(range(10))
    np.testing.assert_allclose(result.lrs, ramp)
    np.testing.assert_allclose(seen, np.repeat(ramp, 3))


def test_steps_the_scaler_skipped_do_not_count() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    calls = [0]
    overflow_at = {3, 4, 9}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        return grad * math.inf if calls[0] in overflow_at else grad

    handle = model.weight.register_hook(poison)
    seen: list[float] = []

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        calls[0] += 1
        seen.append(opt.param_groups[0]["lr"])
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    result = find_lr(model, opt, None, data(), start=1e-4, end=1e-2, steps=10, scaler=scaler, step_fn=step_fn, diverge=None)
    handle.remove()
    ramp = lrkit.exponential(start=1e-4, rate=100 ** (1 / 9)).values(range(10))
    assert calls[0] == 13 and len(result.lrs) == 10
    np.testing.assert_allclose(result.lrs, ramp)
    assert seen[2] == seen[3] == seen[4] and seen[8] == seen[9]  # a skipped update is retried at the same lr


def test_param_groups_keep_their_ratios_and_the_factor_is_reported() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.5}, {"params": [model.bias], "lr": 0.05}])
    ratios: list[float] = []

    def step_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        ratios.append(opt.param_groups[1]["lr"] / opt.param_groups[0]["lr"])
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    result = find_lr(model, opt, None, data(), start=1e-4, end=1.0, steps=30, step_fn=step_fn)
    np.testing.assert_allclose(ratios, 0.1)
    assert result.group_scales == pytest.approx([1.0, 0.1]) and result.lr_before == 0.5
    assert result.suggestion is not None and result.factor == pytest.approx(result.suggestion / 0.5)
    result.apply(opt)
    assert opt.param_groups[0]["lr"] == result.suggestion
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * result.suggestion)


def no_grad_model() -> nn.Module:
    model = nn.Linear(4, 2)
    model.requires_grad_(False)
    return model


BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    ("'start' must be below end", {"start": 1.0, "end": 0.1}),
    ("'steps' must be an integer >= 10", {"steps": 9}),
    ("'start' must be finite", {"start": math.nan}),
    ("'end' must be finite", {"end": math.inf}),
    ("'smoothing' must lie in \\[0, 1\\)", {"smoothing": 1.0}),
    ("'diverge' must be", {"diverge": -1.0}),
    ("'mode' must be one of", {"mode": "cosine"}),
    ("'train_data' must yield at least one batch", {"train_data": []}),
    ("'train_data' must yield at least one batch", {"train_data": iter([])}),
    ("'val_data' must yield at least one batch", {"val_data": []}),
    ("'model' must have trainable parameters", {"model": no_grad_model()}),
    ("'loss_fn' must return a scalar", {"loss_fn": lambda out, y: nn.functional.cross_entropy(out, y, reduction="none")}),
    ("'accumulation_steps' must be", {"accumulation_steps": 0}),
    ("'steps' must be at most 100000", {"steps": 100_001}),
]


@pytest.mark.parametrize(("message", "change"), BAD_INPUTS, ids=[m for m, _ in BAD_INPUTS])
def test_bad_input_raises_before_any_training_step(message: str, change: dict[str, Any]) -> None:
    model = change.pop("model", nn.Linear(4, 2))
    opt = torch.optim.SGD([p for p in model.parameters()] or [nn.Parameter(torch.zeros(1))], lr=0.1)
    steps = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    before = [p.detach().clone() for p in model.parameters()]
    kwargs: dict[str, Any] = {"loss_fn": nn.functional.cross_entropy, "train_data": data()} | change
    with pytest.raises(lrkit.FinderError, match=message):
        find_lr(model, opt, kwargs.pop("loss_fn"), kwargs.pop("train_data"), **kwargs)
    assert steps == [] and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_validation_signal_and_accuracy_metric() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    val = data(seed=1)
    evaluated: list[int] = []

    def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
        evaluated.append(len(y))
        return float((out.argmax(1) == y).float().mean())

    result = find_lr(model, opt, nn.functional.cross_entropy, data(), start=1e-4, end=10, steps=20, val_data=val, val_batches=2,
                     metric=accuracy, diverge=None)  # fmt: skip
    assert result.signal == "validation metric" and result.higher_is_better
    assert len(evaluated) == 20 * 2 + 20  # two validation batches after each update, plus the train batches' metric
    assert all(0.0 <= v <= 1.0 for v in result.losses)
    assert result.suggestion is not None


def test_linear_mode_repeats_and_dict_batches() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = ({"x": x, "y": y} for x, y in data())  # a one-shot generator, cycled

    def step_fn(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(m(batch["x"]), batch["y"])

    result = find_lr(model, opt, None, batches, start=0.0, end=5.0, steps=30, mode="linear", repeats=3, step_fn=step_fn, diverge=None)
    np.testing.assert_allclose(result.lrs, np.linspace(0.0, 5.0, 30))
    assert len(result.runs) == 3 and len(result.run_suggestions) == 3
    logs = np.log([s for s in result.run_suggestions if s is not None])
    assert result.suggestion == pytest.approx(math.exp(logs.mean()))
    assert result.spread == pytest.approx(math.exp(logs.std()))


def test_result_round_trips_and_plots(tmp_path: Any) -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = find_lr(model, opt, nn.functional.cross_entropy, data(), start=1e-5, end=100, steps=40)
    loaded = LRFinderResult.from_json(result.to_json(tmp_path / "r.json"))
    assert loaded.lrs == result.lrs and loaded.suggestions == result.suggestions
    np.testing.assert_array_equal(loaded.losses, result.losses)
    assert LRFinderResult.load(tmp_path / "r.json").stop_reason == result.stop_reason
    labels = [line.get_label() for line in result.plot().axes[0].get_lines()]
    assert sum(f"{name}" in " ".join(labels) for name in result.suggestions if result.suggestions[name]) >= 4
    low, high = result.bounds()
    assert low <= high


def erf_step(lr: float) -> float:
    """A loss falling from 2 to 0 as an erf in log10(lr) centred at 1e-3 (0.32 decades wide): known bounds after smoothing."""
    return 1.0 - math.erf((math.log10(lr) + 3.0) / (math.sqrt(2) * 0.32))


def known_bounds() -> tuple[float, float]:
    """The bounds of `erf_step` over 600 updates from 1e-6, 100 per decade: the lag-free window (sigma 24 updates)
    over an erf of width 32 updates is an erf of width 40, which has made 10% of its drop at z = -erfinv(0.8)."""
    half = 0.9061938 * math.sqrt(2) * 40  # updates from the centre (update 300) to the 10% and 90% points
    return 10.0 ** ((math.ceil(300 - half) - 600) / 100), 10.0 ** ((math.ceil(300 + half) - 600) / 100)


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_bounds_of_a_curve_with_known_answer(higher_is_better: bool) -> None:
    sign = -1.0 if higher_is_better else 1.0  # an "accuracy" that rises where the loss falls has the same bounds
    model, opt, step_fn = lr_probe(lambda lr: sign * erf_step(lr))
    metric = (lambda m, batch: sign * erf_step(opt.param_groups[0]["lr"])) if higher_is_better else None
    result = find_lr(model, opt, None, [0], start=1e-6, end=10**-0.01, steps=600, step_fn=step_fn, metric=metric, diverge=None)
    assert result.stop_reason == "completed" and result.higher_is_better is higher_is_better
    low, high = result.bounds()
    expected_low, expected_high = known_bounds()
    assert low == pytest.approx(expected_low, rel=1e-9) and high == pytest.approx(expected_high, rel=1e-9)
    assert result.suggestions["lrkit"] == pytest.approx(expected_high, rel=1e-9)  # the end of the descent: 90% of the drop
    assert LRFinderResult.from_json(result.to_json()).bounds() == (low, high) == tuple(result.to_dict()["bounds"])


def test_divergence_test_smooths_like_the_result() -> None:
    from lrkit.analysis import suggest
    from lrkit.torch.finder.loop import DivergenceTest

    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    test = DivergenceTest(None, 3, 0.9)
    seen = []
    for v in values:
        test.update(v)
        seen.append(test.ema.average / (1.0 - 0.9**test.ema.count))
    assert seen == suggest.smooth(values, 0.9).tolist()


def test_a_saved_result_loads_and_plots_without_torch(tmp_path: Any) -> None:
    model, opt, step_fn = lr_probe(erf_step)
    result = find_lr(model, opt, None, [0], start=1e-6, end=1.0, steps=100, step_fn=step_fn)
    result.to_json(tmp_path / "r.json")
    code = f"""
        import sys
        sys.modules["torch"] = None  # as on a machine without torch: `import torch` raises ImportError
        import lrkit
        r = lrkit.LRFinderResult.load({str(tmp_path / "r.json")!r})
        r.plot().savefig({str(tmp_path / "r.png")!r})
        print(r.suggestion, r.bounds(), "torch" in sys.modules and sys.modules["torch"] is not None)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == repr(result.suggestion) and done.stdout.strip().endswith("False")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
