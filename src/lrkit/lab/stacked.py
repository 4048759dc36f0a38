"""P copies of one architecture as stacked weights, run as one batched computation.

Plain MLPs (`nn.Sequential` of `nn.Linear` and element-wise activations) run as
batched matrix products on features-first activations, the fastest form on a CPU; any other model
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

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lrkit import validate
from lrkit.errors import LabError

if TYPE_CHECKING:
    import torch

    from lrkit.lab.problems import Problem

_EVAL_ROWS = 2**15  # members x samples per evaluation pass: activations stay in cache, not in fresh page-faulted memory
_BLOCK_FLOATS = 2**20  # members x samples x width of a plain MLP's evaluation block (4 MiB, a reused buffer that stays in cache)


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
        from torch import nn
        from torch.func import stack_module_state

        if not seeds:
            validate.fail("StackedModel", "seeds", "must name at least one member", seeds, LabError)
        built: dict[int, torch.nn.Module] = {}  # members with one seed start from the same weights: build them once
        with torch.random.fork_rng(devices=[]):
            for seed in dict.fromkeys(seeds):
                # the CPU generator alone: torch.manual_seed also queues lazy seeding of every accelerator, costly per member
                torch.default_generator.manual_seed(seed)
                built[seed] = problem.make_model().to(device or problem.x_train.device)
        models = [built[seed] for seed in seeds]
        params, buffers = stack_module_state(models)  # type: ignore[no-untyped-call]
        self.names = list(params)
        self._index = {name: k for k, name in enumerate(self.names)}
        self.params: list[torch.Tensor] = [params[n] for n in self.names]
        self.buffers: dict[str, torch.Tensor] = buffers
        self.size = len(seeds)
        self.fast = is_plain_mlp(models[0]) and not buffers
        self.layers = list(models[0].children()) if self.fast else []
        self._scratch_buffers: dict[tuple[Any, ...], torch.Tensor] = {}
        self.augmented = bool(self.layers) and isinstance(self.layers[0], nn.Linear) and self.layers[0].bias is not None
        self.last = max((i for i, m in enumerate(self.layers) if isinstance(m, nn.Linear)), default=-1)
        self.width = max((p.shape[1] for p in self.params if p.dim() == 3), default=1)  # a plain MLP's widest layer
        self.base = copy.deepcopy(models[0]).to("meta")
        self.base.train()
        self.manual = self.fast and _hand_differentiable(models[0]) and type(problem).losses is _problem_losses()

    def __call__(self, x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """Outputs (P, B, ...): `x` is (P, B, ...) per member, or (B, ...) seen by all members when `shared`."""
        return self._mlp(x) if self.fast else self._vmapped(x, shared)

    def _mlp(self, x: torch.Tensor, members: slice = slice(None), *, reuse: bool = False) -> torch.Tensor:
        return self._forward(x, members=members, reuse=reuse)[-1].mT

    def _forward(self, x: torch.Tensor, *, tape: bool = False, members: slice = slice(None), reuse: bool = False) -> list[torch.Tensor]:
        """The activations features-first, (P, features, B): the input, then each layer's output (the last one only without `tape`).

        Features-first, each member's layer is weights (out, in) times a batch of columns (in, B): for the narrow
        layers of small MLPs these batched products run several times faster on a CPU than batch-first ones, and a
        class axis becomes contiguous (P, B) slabs. A shared input (B, in) stays 2-D up to the first Linear, which is
        then one matrix product for all members at once. `members` selects a block of them (for a shared input).
        With `reuse`, hidden layers write into this model's scratch buffers (valid until the next such call).
        """
        import torch
        from torch import nn

        acts = [self._input(x, reuse)]
        for i, layer in enumerate(self.layers):
            a = acts[-1]
            if isinstance(layer, nn.Linear):
                a = self._linear(i, a, members, reuse and i != self.last)
            elif i > 0 and isinstance(self.layers[i - 1], nn.Linear) and not torch.is_grad_enabled():
                # in place on a Linear's fresh output only (never the caller's input): backward needs an activation's output, not its input
                a = _ACTIVATIONS_IN_PLACE[type(layer).__name__](a)
            else:
                a = layer(a)
            acts.append(a)
        return acts if tape else acts[-1:]

    def _input(self, x: torch.Tensor, reuse: bool) -> torch.Tensor:
        """The input features-first and contiguous (products with it run 2x faster than with a transposed view).

        When the first layer is a Linear with a bias, a row of ones is appended: that layer's bias then rides
        in its matrix product, forward (no pass adding it) and backward (its gradient, no pass summing it).
        """
        import torch

        rows = x.T if x.dim() == 2 else x.mT
        if not self.augmented:
            return rows.contiguous()
        shape = (*rows.shape[:-2], rows.shape[-2] + 1, rows.shape[-1])
        a = self._scratch("x", shape, rows) if reuse else torch.empty(shape, dtype=rows.dtype, device=rows.device)
        a[..., :-1, :].copy_(rows)
        a[..., -1, :].fill_(1.0)
        return a

    def _linear(self, i: int, a: torch.Tensor, members: slice, reuse: bool) -> torch.Tensor:
        """Layer i of the selected members on features-first `a`: (P, in, B), or (in, B) seen by all of them."""
        import torch

        w, b = self.params[self._index[f"{i}.weight"]][members], self._param(f"{i}.bias", members)
        if i == 0 and self.augmented and b is not None:  # the input's row of ones meets the bias as a last weight column
            w, b = torch.cat([w, b.unsqueeze(-1)], -1), None
        z = self._scratch(f"z{i}", (len(w), w.shape[1], a.shape[-1]), a) if reuse else None
        if a.dim() == 2:
            z = torch.mm(w.reshape(-1, w.shape[-1]), a, out=None if z is None else z.view(-1, a.shape[-1])).view(len(w), w.shape[1], -1)
        else:
            z = torch.bmm(w, a, out=z)
        # a separate in-place add: baddbmm's copy of the broadcast bias costs more than this pass
        return z if b is None else z.add_(b.unsqueeze(-1))

    def _scratch(self, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A buffer kept for the next call of the same shape: a fresh multi-megabyte tensor per step is page-faulted in anew."""
        import torch

        full = (key, like.dtype, like.device, *shape)
        if full not in self._scratch_buffers:
            self._scratch_buffers[full] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return self._scratch_buffers[full]

    def _param(self, name: str, members: slice = slice(None)) -> torch.Tensor | None:
        index = self._index.get(name)
        return None if index is None else self.params[index][members]

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

        acts = self._forward(x, tape=True, reuse=True)  # acts[i] is layer i's input, acts[i + 1] its output
        losses, g = _loss_and_output_grad(problem, acts[-1], y)
        grads: dict[str, torch.Tensor] = {}
        first = min(i for i, layer in enumerate(self.layers) if isinstance(layer, nn.Linear))
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if isinstance(layer, nn.Linear) and i == 0 and self.augmented:  # the bias is the last column (see _input)
                full = _weight_grad(g, acts[0])
                grads["0.weight"], grads["0.bias"] = full[..., :-1], full[..., -1]
            elif isinstance(layer, nn.Linear):
                grads[f"{i}.weight"] = _weight_grad(g, acts[i])
                grads[f"{i}.bias"] = g.sum(-1)
                if i > first:
                    w = self.params[self._index[f"{i}.weight"]]
                    g = torch.bmm(w.mT, g, out=self._scratch(f"g{i}", (g.shape[0], w.shape[2], g.shape[2]), g))
            else:  # in place: g is a fresh tensor or a scratch buffer of this pass
                g = _ACTIVATION_GRADS[type(layer).__name__](g, acts[i + 1])
        return losses, acts[-1].mT, [grads[n] for n in self.names]

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """The members in eval mode (dropout off, BatchNorm on its running statistics) inside the block.

        Example:
            >>> from lrkit.lab.problems import get_problem
            >>> m = StackedModel(get_problem("blobs"), [0])
            >>> with m.evaluating():
            ...     inside = m.base.training
            >>> inside, m.base.training
            (False, True)
        """
        self.base.eval()
        try:
            yield
        finally:
            self.base.train()

    def select(self, rows: Sequence[int], device: torch.device | str | None = None) -> None:
        """Keep only the members at `rows` (in that order), moved to `device` if given: weights and buffers become new leaves.

        Example:
            >>> from lrkit.lab.problems import get_problem
            >>> m = StackedModel(get_problem("blobs"), [0, 1, 2])
            >>> second = m.params[0][1].clone()
            >>> m.select([1])
            >>> m.size, bool((m.params[0][0] == second).all()), m.params[0].is_leaf
            (1, True, True)
        """
        import torch

        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.params[0].device)
        target = self.params[0].device if device is None else torch.device(device)
        self.params = [p.detach().index_select(0, index).to(target).requires_grad_(p.requires_grad) for p in self.params]
        self.buffers = {k: b.index_select(0, index).to(target) for k, b in self.buffers.items()}
        self.size = len(index)
        self._scratch_buffers.clear()

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
        # blocks of members x samples: a plain MLP takes few members with many samples each (few, larger matrix products)
        group = max(1, _BLOCK_FLOATS // (len(x) * self.width)) if self.fast else self.size
        chunk = max(16, _EVAL_ROWS // min(group, self.size))
        with torch.no_grad(), self.evaluating():
            for first in range(0, self.size, group):
                members = slice(first, first + group)
                for start in range(0, len(x), chunk):
                    xs, ys = x[start : start + chunk], y[start : start + chunk]
                    out = self._mlp(xs, members, reuse=True) if self.fast else self(xs, shared=True)
                    target = ys.expand(len(out), *ys.shape)
                    loss_sum[members] += problem.losses(out, target).double().sum(-1)
                    if problem.task == "classification":
                        hits[members] += (predicted(out) == target).double().sum(-1)
        accuracy = hits / len(x) if problem.task == "classification" else torch.full_like(hits, float("nan"))
        return loss_sum / len(x), accuracy


def predicted(out: torch.Tensor) -> torch.Tensor:
    """The predicted class of outputs (..., C): `out.argmax(-1)` exactly (first maximum; NaN counts as the maximum).

    `torch.max` along the class axis gives the same indices as `argmax`, several times faster on a
    small or strided class axis (a features-first output viewed batch-first).

    Example:
        >>> import torch
        >>> predicted(torch.tensor([[1.0, 3.0, 3.0], [float("nan"), 5.0, 0.0]])).tolist()
        [1, 0]
    """
    import torch

    return torch.max(out, -1).indices


def _problem_losses() -> object:
    from lrkit.lab.problems import Problem

    return Problem.losses


def _hand_differentiable(model: torch.nn.Module) -> bool:
    """A plain MLP whose every Linear has a bias and whose activations have a known derivative."""
    from torch import nn

    return all(
        (isinstance(m, nn.Linear) and m.bias is not None) or type(m).__name__ in _ACTIVATION_GRADS for m in model.children()
    ) and any(isinstance(m, nn.Linear) for m in model.children())


def _weight_grad(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The weight gradient g @ a^T, (P, out, in), from features-first g (P, out, B) and a (P, in, B).

    The product is formed with the wider of the two dimensions as its columns (transposing back is free):
    a 50 x 2 result takes a batched product twice as long as its 2 x 50 transpose.
    """
    import torch

    if a.shape[1] < g.shape[1]:
        return torch.bmm(a, g.mT).mT
    return torch.bmm(g, a.mT)


def _loss_and_output_grad(problem: Problem, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean loss and its gradient for features-first outputs (P, C, B): (softmax - onehot) / B, or 2 (out - y) / B."""
    import torch

    batch = y.shape[-1]
    if problem.task == "classification":
        logp = torch.log_softmax(out, 1)
        target = y.unsqueeze(1)
        losses = -logp.gather(1, target).squeeze(1).mean(-1)
        g = logp.exp_().scatter_add_(1, target, torch.full_like(logp[:, :1], -1.0)).div_(batch)
        return losses, g
    rows = out.mT  # regression targets are batch-first, (P, B) or (P, B, D)
    diff = (rows.squeeze(-1) if rows.dim() == y.dim() + 1 and rows.shape[-1] == 1 else rows) - y
    return (diff * diff).mean(-1), (diff * (2.0 / batch)).reshape(rows.shape).mT


def _relu_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)
    return result


def _tanh_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.tanh_backward.grad_input(g, out, grad_input=g)
    return result


def _sigmoid_grad(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    import torch

    result: torch.Tensor = torch.ops.aten.sigmoid_backward.grad_input(g, out, grad_input=g)
    return result


# activation class name -> gradient through it, written over the gradient above, from the activation's output (as autograd does)
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
