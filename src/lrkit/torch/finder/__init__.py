"""`lrkit.find_lr`: the learning-rate range test, transactional, distributed-aware, with pure suggestion rules.

The lr of the first param group follows an exponential (fastai) or linear (Smith)
ramp from `start` to `end`, one value per optimizer update; the other groups are
scaled by the same factor, so their ratios hold. The recorded signal is smoothed
(bias-corrected EMA) and read by the rules of `lrkit.analysis.suggest`.
Everything the test touches is restored when it returns or raises.

One concern per module: `config` (the inputs, checked once), `snapshot` (the
transaction), `loop` (one run), `batches` (data and signals); the result is the
torch-free `lrkit.finder_result.LRFinderResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from lrkit.finder_result import LRFinderResult
from lrkit.optim import Optim
from lrkit.torch.data import batch_slices, epoch_batches
from lrkit.torch.finder.batches import Batches, StepFn
from lrkit.torch.finder.config import MAX_STEPS, FinderConfig, Target
from lrkit.torch.finder.loop import Run, result, run
from lrkit.torch.finder.snapshot import transaction

if TYPE_CHECKING:
    from lrkit.lab.problems import Problem

__all__ = ["MAX_STEPS", "FinderConfig", "LRFinderResult", "find_lr", "find_on_problem"]


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None,
    train_data: Iterable[Any],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smoothing: float = 0.98,
    diverge: float | None = 4.0,
    val_data: Iterable[Any] | None = None,
    val_batches: int | None = None,
    metric: Callable[..., Any] | None = None,
    accumulation_steps: int = 1,
    repeats: int = 1,
    scaler: Any = None,
    step_fn: StepFn | None = None,
) -> LRFinderResult:
    """Run the learning-rate range test and suggest a learning rate; leaves every state as it found it.

    Args:
        model, optimizer: what to test; the optimizer's groups keep their lr ratios.
        loss_fn: `loss_fn(model(inputs), targets)` for `(inputs, targets)` batches (None with `step_fn`).
        train_data: any iterable of batches, cycled if shorter than the test.
        start, end, steps, mode: the ramp of the first group's lr: `steps` optimizer updates from `start`
            to `end`, exponential ("exp") or linear ("linear"); `steps` lies in [10, 100_000] (`MAX_STEPS`).
        smoothing: the EMA factor beta of the smoothed signal.
        diverge: stop once the smoothed signal is worse than its best by `diverge` times the early scale
            (the larger of its initial improvement and its early noise): valid for negative losses and any
            scale. None: stop only on NaN/inf, which always stops the test at once.
        val_data, val_batches: record the loss on (the first `val_batches` batches of) `val_data` after each update.
        metric: record `metric(outputs, targets)` instead of the loss, higher is better (Smith's accuracy test);
            with `step_fn` it is called as `metric(model, batch)`.
        accumulation_steps: micro-batches per optimizer update; the lr advances once per update.
        repeats: independent tests (data keeps flowing); the suggestion is their log-mean, `spread` their spread.
        scaler: a `torch.amp.GradScaler`; an update it skips does not advance the lr.
        step_fn: `step_fn(model, batch) -> loss` for batches of any other shape.

    Every input is checked before the first step (`lrkit.FinderError`; a wrong type is also a `TypeError`).
    Under `torch.distributed` the signal is all-reduced, so every rank stops at the same step and
    returns the same suggestion.

    Example:
        >>> import torch, lrkit
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(256, 2); y = (x[:, 0] > x[:, 1]).long()
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
        >>> before = model[0].weight.clone()
        >>> result = lrkit.find_lr(model, opt, torch.nn.functional.cross_entropy, batches, start=1e-4, end=10, steps=60)
        >>> 1e-4 < result.suggestion < 10, bool(torch.equal(model[0].weight, before)), opt.param_groups[0]["lr"]
        (True, True, 0.1)
    """
    config = FinderConfig(start=start, end=end, steps=steps, mode=mode, smoothing=smoothing, diverge=diverge,
                          accumulation_steps=accumulation_steps, repeats=repeats, val_batches=val_batches)  # fmt: skip
    target = Target.check(model, optimizer, loss_fn, config, val_data=val_data, metric=metric, scaler=scaler, step_fn=step_fn)
    batches = Batches(train_data)
    table = config.lrs()
    runs: list[Run] = []
    with transaction(model, optimizer, scaler) as snapshot:
        for i in range(config.repeats):
            if i:
                snapshot.restore(rng=False)  # each repeat starts from the same weights but sees fresh data and noise
            runs.append(run(config, target, table, batches))
    return result(runs, config, table.size, lr_before=target.lr_before, signal=target.signal,
                  higher_is_better=target.higher_is_better, group_scales=target.group_scales)  # fmt: skip


def find_on_problem(
    problem: Problem | str,
    optimizer: Optim | str,
    *,
    seed: int = 0,
    val_batches: int | None = None,
    accuracy: bool = False,
    device: str | torch.device = "cpu",
    **options: Any,
) -> LRFinderResult:
    """The range test on a lab problem: a fresh model, the problem's lr before the test, lrkit's minibatch order.

    The model is built after `torch.manual_seed(seed)`, the optimizer from its spec (`lrkit.Optim` or text such as
    "sgd(momentum=0.9)") at the problem's `lr`; the training data is one epoch in `lrkit.torch.data`'s order for
    `seed`, cycled. `val_batches` records the loss on that many batches of the test split; `accuracy` records
    accuracy instead (higher is better). The model is moved to `device` (the batches follow it).
    `options` go to `find_lr` (`start`, `end`, `steps`, `mode`, `repeats`, ...).

    Example:
        >>> r = find_on_problem("blobs", "adam", steps=20, start=1e-4, end=1.0)
        >>> r.signal, len(r.lrs) <= 20
        ('train loss', True)
    """
    from lrkit.lab.problems import get_problem

    spec = Optim.of(optimizer, "find_on_problem", "optimizer")
    p = get_problem(problem, seed=seed) if isinstance(problem, str) else problem
    torch.manual_seed(seed)
    model = p.make_model().to(device)
    val = None
    if val_batches is not None:
        val = [(p.x_test[s], p.y_test[s]) for s in batch_slices(len(p.x_test), p.batch_size)]
    return find_lr(model, spec.to_torch(model.parameters(), p.lr), p.loss, epoch_batches(p.x_train, p.y_train, p.batch_size, seed, 1),
                   val_data=val, val_batches=val_batches, metric=p.accuracy if accuracy else None, **options)  # fmt: skip
