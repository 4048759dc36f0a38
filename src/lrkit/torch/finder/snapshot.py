"""The range test's transaction: snapshot everything it may touch, restore it bit-identically.

The snapshot lives in CPU memory (never on disk, so nothing is left behind on a
read-only or shared file system, and GPU memory is not doubled). Restoring writes
into the existing tensors, so references held elsewhere (the optimizer's
params, a compiled graph) stay valid.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from lrkit.torch._tensors import cpu_copy


class Snapshot:
    """Model tensors (params, grads, all buffers, train/eval flags), optimizer, scaler and RNG states.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.1)
        >>> snap = Snapshot(model, opt)
        >>> model(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> snap.restore()
        >>> opt.state_dict()["state"], model.weight.grad is None
        ({}, True)
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None) -> None:
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.params: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = [
            (p, cpu_copy(p), cpu_copy(p.grad)) for p in model.parameters()
        ]
        self.buffers = [(b, cpu_copy(b)) for b in model.buffers()]
        self.modes = [(m, m.training) for m in model.modules()]
        state = optimizer.state_dict()
        # hyperparameters stay where they are (a tensor lr of a fused optimizer lives on its device); state goes to CPU
        self.optim = {"state": cpu_copy(state["state"]), "param_groups": copy.deepcopy(state["param_groups"])}
        self.extra_optim_params = _optimizer_only_params(model, optimizer)
        self.scaler_state = _scaler_state(scaler)
        self.rng = _rng_state()

    def restore(self, rng: bool = True) -> None:
        """Write every saved value back (in place where a tensor exists); the RNG states too unless `rng=False`."""
        with torch.no_grad():
            for p, value, grad in self.params:
                p.copy_(value)
                _set_grad(p, grad)
            for p, value, grad in self.extra_optim_params:
                p.copy_(value)
                _set_grad(p, grad)
            for b, value in self.buffers:
                b.copy_(value)
        for m, training in self.modes:
            m.training = training
        self.optimizer.load_state_dict({"state": cpu_copy(self.optim["state"]), "param_groups": copy.deepcopy(self.optim["param_groups"])})
        _restore_scaler(self.scaler, self.scaler_state)
        if rng:
            _set_rng_state(self.rng)


@contextlib.contextmanager
def transaction(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None) -> Iterator[Snapshot]:
    """Run the body, then restore everything, whether it returned or raised (KeyboardInterrupt included).

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> before = model.weight.clone()
        >>> with transaction(model, torch.optim.SGD(model.parameters(), lr=1.0)):
        ...     _ = model.weight.data.add_(5.0)
        >>> bool(torch.equal(model.weight, before))
        True
    """
    snapshot = Snapshot(model, optimizer, scaler)
    try:
        yield snapshot
    finally:
        snapshot.restore()


def _set_grad(p: torch.Tensor, grad: torch.Tensor | None) -> None:
    if grad is None:
        p.grad = None
    elif p.grad is not None and p.grad.shape == grad.shape:
        p.grad.copy_(grad)
    else:
        p.grad = grad.to(p.device)


def _optimizer_only_params(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, torch.Tensor, Any]]:
    """Tensors the optimizer updates that are not the model's (e.g. a learnable loss temperature)."""
    own = {id(p) for p in model.parameters()}
    extra = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in own]
    return [(p, cpu_copy(p), cpu_copy(p.grad)) for p in extra]


def _scaler_state(scaler: Any) -> dict[str, Any] | None:
    if scaler is None:
        return None
    return {
        "state": cpu_copy(scaler.state_dict()),
        "scale": cpu_copy(scaler._scale),  # None until the scaler's first use
        "tracker": cpu_copy(scaler._growth_tracker),
        "per_optimizer": copy.deepcopy(dict(scaler._per_optimizer_states)),  # a few flags, empty between iterations
    }


def _restore_scaler(scaler: Any, saved: dict[str, Any] | None) -> None:
    if scaler is None or saved is None:
        return
    if saved["state"]:
        scaler.load_state_dict(cpu_copy(saved["state"]))
    for attr, key in (("_scale", "scale"), ("_growth_tracker", "tracker")):
        value, current = saved[key], getattr(scaler, attr)
        if value is None:
            setattr(scaler, attr, None)  # lazily created on first use: leave it uncreated, as it was
        elif current is not None:
            current.copy_(value)
        else:
            setattr(scaler, attr, value.clone())
    scaler._per_optimizer_states.clear()
    scaler._per_optimizer_states.update(copy.deepcopy(saved["per_optimizer"]))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
