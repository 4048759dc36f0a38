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
from collections.abc import Callable, Sequence
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
        self.manual = self.fast and _hand_differentiable(models[0]) and type(problem).losses is _problem_losses()

    def __call__(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Outputs (P, B, ...): `x` is (P, B, ...) per member, or (B, ...) seen by all members when `shared`."""
        return self._mlp(x) if self.fast else self._vmapped(x, shared)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        from torch import nn

        weights = dict(zip(self.names, self.params))
        for i, layer in enumerate(self.layers):
            # in place only on a Linear's fresh output (never the caller's input or another layer's output)
            fresh = i > 0 and isinstance(self.layers[i - 1], nn.Linear)
            if isinstance(layer, nn.Linear):
                w, b = weights[f"{i}.weight"].transpose(1, 2), weights.get(f"{i}.bias")
                if x.dim() == 2:  # shared input: the same samples for every member (faster than one wide matrix product here)
                    x = x.expand(self.size, *x.shape)
                x = torch.bmm(x, w) if b is None else torch.baddbmm(b.unsqueeze(1), x, w)
            elif fresh and not torch.is_grad_enabled() and type(layer).__name__ in _ACTIVATIONS_IN_PLACE:  # evaluation: no new tensor
                x = _ACTIVATIONS_IN_PLACE[type(layer).__name__](x)
            else:
                x = layer(x)
        return x

    def loss_and_grads(self, problem: Problem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Each member's mean loss (P,), the outputs, and each parameter's gradient of the summed member losses.

        Plain MLPs with ReLU / Tanh / Sigmoid differentiate by hand (the same formulas autograd
        applies, without its bookkeeping: a cheaper step); any other model goes through autograd.

        Example:
            >>> import torch
            >>> from lrkit.lab.problems import get_problem
            >>> p = get_problem("blobs")
            >>> m = StackedModel(p, [0, 1])
            >>> x, y = p.x_train[:8].expand(2, 8, 2), p.y_train[:8].expand(2, 8)
            >>> losses, _, grads = m.loss_and_grads(p, x, y)
            >>> auto = torch.autograd.grad(p.loss(m(x), y).sum(), m.params)
            >>> m.manual, all(torch.allclose(g, a, atol=1e-6) for g, a in zip(grads, auto))
            (True, True)
        """
        import torch

        if not self.manual:
            out = self(x)
            losses = problem.loss(out, y)
            return losses, out, list(torch.autograd.grad(losses.sum(), self.params))
        with torch.no_grad():
            return self._by_hand(problem, x, y)

    def _by_hand(self, problem: Problem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        import torch
        from torch import nn

        weights = dict(zip(self.names, self.params))
        inputs, outputs = [], []
        a = x
        for i, layer in enumerate(self.layers):
            inputs.append(a)
            if isinstance(layer, nn.Linear):
                a = torch.baddbmm(weights[f"{i}.bias"].unsqueeze(1), a, weights[f"{i}.weight"].transpose(1, 2))
            elif i > 0 and isinstance(self.layers[i - 1], nn.Linear):
                # in place on a Linear's fresh output: the backward pass needs an activation's output, never its input
                a = _ACTIVATIONS_IN_PLACE[type(layer).__name__](a)
            else:
                a = layer(a)
            outputs.append(a)
        losses, g = _loss_and_output_grad(problem, a, y)
        grads: dict[str, torch.Tensor] = {}
        first = min(i for i, layer in enumerate(self.layers) if isinstance(layer, nn.Linear))
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if isinstance(layer, nn.Linear):
                grads[f"{i}.weight"] = torch.bmm(g.transpose(1, 2), inputs[i])
                grads[f"{i}.bias"] = g.sum(1)
                if i > first:
                    g = torch.bmm(g, weights[f"{i}.weight"])
            else:
                g = _ACTIVATION_GRADS[type(layer).__name__](g, outputs[i])
        return losses, a, [grads[n] for n in self.names]

    def _vmapped(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def one(p: dict[str, Any], b: dict[str, Any], xi: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.base, (p, b), (xi,))
            return out

        batched = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
        out: torch.Tensor = batched(dict(zip(self.names, self.params)), self.buffers, x)
        return out

    def evaluate(self, problem: Problem, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member mean loss and accuracy (NaN for regression) over a whole data set, shape (P,) each.

        Example:
            >>> from lrkit.lab.problems import get_problem
            >>> p = get_problem("blobs")
            >>> loss, acc = StackedModel(p, [0, 1]).evaluate(p, p.x_test, p.y_test)
            >>> tuple(loss.shape), bool(((acc >= 0) & (acc <= 1)).all())
            ((2,), True)
        """
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


def _problem_losses() -> object:
    from lrkit.lab.problems import Problem

    return Problem.losses


def _hand_differentiable(model: torch.nn.Module) -> bool:
    """A plain MLP whose every Linear has a bias and whose activations have a known derivative."""
    from torch import nn

    return all(
        (isinstance(m, nn.Linear) and m.bias is not None) or type(m).__name__ in _ACTIVATION_GRADS for m in model.children()
    ) and any(isinstance(m, nn.Linear) for m in model.children())


def _loss_and_output_grad(problem: Problem, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss and its gradient with respect to the outputs: (softmax - onehot) / B, or 2 (out - y) / B."""
    import torch

    batch = y.shape[-1]
    if problem.task == "classification":
        logp = torch.log_softmax(out, -1)
        losses = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(-1)
        g = logp.exp_().scatter_add_(-1, y.unsqueeze(-1), torch.full_like(logp[..., :1], -1.0)).div_(batch)
        return losses, g
    diff = (out.squeeze(-1) if out.dim() == y.dim() + 1 and out.shape[-1] == 1 else out) - y
    return (diff * diff).mean(-1), (diff * (2.0 / batch)).reshape(out.shape)


def _relu_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.threshold_backward(g, out, 0)
    return result


def _tanh_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.tanh_backward(g, out)
    return result


def _sigmoid_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.sigmoid_backward(g, out)
    return result


# activation class name -> gradient through it, from the gradient above and the activation's output (as autograd does)
_ACTIVATION_GRADS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ReLU": _relu_grad,
    "Tanh": _tanh_grad,
    "Sigmoid": _sigmoid_grad,
    "Identity": lambda g, out: g,
}


def _in_place(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(a: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = getattr(a, name)()
        return result

    return apply


_ACTIVATIONS_IN_PLACE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ReLU": _in_place("relu_"),
    "Tanh": _in_place("tanh_"),
    "Sigmoid": _in_place("sigmoid_"),
    "Identity": lambda a: a,
}
