"""P copies of one architecture as stacked weights, run as one batched computation.

Plain MLPs (`nn.Sequential` of `nn.Linear` and element-wise activations) run as
batched matrix products (`baddbmm`), the fastest form on a CPU; any other model
runs through `torch.func.vmap` over `functional_call`. Either way the weights are
ordinary leaf tensors with a leading member axis, and one backward pass of the
summed member losses gives every member its own gradient.

Example:
    >>> import torch
    >>> from lrkit.lab.problems import get_problem
    >>> m = StackedModel(get_problem("blobs"), seeds=[0, 1, 2])
    >>> m.fast, tuple(m(torch.zeros(5, 2), shared=True).shape)
    (True, (3, 5, 3))
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lrkit.errors import LabError, bad

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

_EVAL_ROWS = 2**15  # members x samples per evaluation pass: activations stay in cache, not in fresh page-faulted memory


def _elementwise() -> tuple[type, ...]:
    from torch import nn

    return (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Identity)


def is_plain_mlp(model: torch.nn.Module) -> bool:
    """Whether `model` is an `nn.Sequential` of `nn.Linear` layers and element-wise activations only.

    Example:
        >>> from torch import nn
        >>> is_plain_mlp(nn.Sequential(nn.Linear(2, 3), nn.ReLU())), is_plain_mlp(nn.Sequential(nn.Conv1d(1, 1, 3)))
        (True, False)
    """
    from torch import nn

    return isinstance(model, nn.Sequential) and all(isinstance(m, (nn.Linear, *_elementwise())) for m in model)


class StackedModel:
    """`len(seeds)` freshly initialized copies of `problem.make_model()` (copy i built after `torch.manual_seed(seeds[i])`).

    The caller's global RNG state is left as it was. `params` are the stacked
    weights (leaf tensors of shape (P, ...)) in `named_parameters` order.

    Example:
        >>> import torch
        >>> from lrkit.lab.problems import get_problem
        >>> p = get_problem("blobs")
        >>> m = StackedModel(p, seeds=[4])
        >>> _ = torch.manual_seed(4)
        >>> torch.equal(m.params[0][0], p.make_model().state_dict()["0.weight"])
        True
    """

    def __init__(self, problem: Problem, seeds: Sequence[int], device: torch.device | str | None = None) -> None:
        import torch
        from torch.func import stack_module_state

        if not seeds:
            raise LabError(bad("StackedModel", "seeds", "must name at least one member", seeds))
        models = []
        with torch.random.fork_rng(devices=[]):
            for seed in seeds:
                # the CPU generator alone: torch.manual_seed also queues lazy seeding of every accelerator, costly per member
                torch.default_generator.manual_seed(seed)
                models.append(problem.make_model().to(device or problem.x_train.device))
        params, buffers = stack_module_state(models)  # type: ignore[no-untyped-call]
        self.names = list(params)
        self.params: list[torch.Tensor] = [params[n] for n in self.names]
        self.buffers: dict[str, torch.Tensor] = buffers
        self.size = len(seeds)
        self.fast = is_plain_mlp(models[0]) and not buffers
        self.layers = list(models[0].children()) if self.fast else []
        self.base = copy.deepcopy(models[0]).to("meta")
        self.base.train()

    def __call__(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Outputs (P, B, ...): `x` is (P, B, ...) per member, or (B, ...) seen by all members when `shared`."""
        return self._mlp(x) if self.fast else self._vmapped(x, shared)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        from torch import nn

        weights = dict(zip(self.names, self.params))
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                w, b = weights[f"{i}.weight"].transpose(1, 2), weights.get(f"{i}.bias")
                if x.dim() == 2:  # shared input: the same samples for every member
                    x = x.expand(self.size, *x.shape)
                x = torch.bmm(x, w) if b is None else torch.baddbmm(b.unsqueeze(1), x, w)
            else:
                x = layer(x)
        return x

    def _vmapped(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def one(p: dict[str, Any], b: dict[str, Any], xi: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.base, (p, b), (xi,))
            return out

        batched = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
        out: torch.Tensor = batched(dict(zip(self.names, self.params)), self.buffers, x)
        return out

    def evaluate(self, problem: Problem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member mean loss and accuracy (NaN for regression) over a whole data set, shape (P,) each."""
        import torch

        loss_sum = torch.zeros(self.size, dtype=torch.float64, device=x.device)
        hits = torch.zeros(self.size, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            chunk = max(16, _EVAL_ROWS // self.size)
            for start in range(0, len(x), chunk):
                xs, ys = x[start : start + chunk], y[start : start + chunk]
                out = self(xs, shared=True)
                target = ys.expand(self.size, *ys.shape)
                loss_sum += problem.losses(out, target).double().sum(-1)
                if problem.task == "classification":
                    hits += (out.argmax(-1) == target).double().sum(-1)
        accuracy = hits / len(x) if problem.task == "classification" else torch.full_like(hits, float("nan"))
        return loss_sum / len(x), accuracy
