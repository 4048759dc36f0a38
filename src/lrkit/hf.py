"""lrkit in the Hugging Face Trainer: `Trainer(optimizers=(opt, lrkit.Scheduler(...)))`, and a callback for plateau, Guard and Monitor.

`lrkit.Scheduler` needs no adapter: the Trainer steps it once per optimizer step and
saves / loads its `state_dict` with each checkpoint, so `train(resume_from_checkpoint=...)`
gets exactly the lrs of an unbroken run. `LrkitCallback` adds what the Trainer lacks
(transformers issue 29417): a plateau on top of warmup + cosine, fed `eval_loss` (or
any metric) after each evaluation; the `lrkit.Guard`; and the `lrkit.Monitor`'s
columns and diagnosis in the Trainer's logs.

Example:
    >>> import transformers, lrkit.hf
    >>> isinstance(lrkit.hf.LrkitCallback(metric=None), transformers.TrainerCallback)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import transformers

from lrkit.torch.trainer_hooks import TrainerHooks, summary

_log = transformers.utils.logging.get_logger("lrkit.hf")


class LrkitCallback(transformers.TrainerCallback):
    """Feed an evaluation metric to the `lrkit.Scheduler`'s plateau, run the Guard, log the Monitor and its diagnosis.

    The Trainer's `lr_scheduler` must be an `lrkit.Scheduler` (`Trainer(optimizers=(opt,
    sched))`, with `plateau=` when `metric` is given). The loss of each batch is read
    from the model's output (`outputs.loss`, via a forward hook; averaged over gradient
    accumulation). At each log the Monitor's latest columns are added as `lrkit/lr`,
    `lrkit/grad_norm`, ... to the logs and `state.log_history` (reporters that run
    before this callback do not see them: pass it first, `callbacks=[cb]` puts it after
    the defaults); at the end of training the diagnosis is added to `state.log_history`
    and the log, and stays in `findings`.

    Args:
        metric: the evaluation metric the plateau watches ("eval_loss"; None: none).
        guard: True, False, or a dict of `lrkit.Guard` keyword arguments.
        monitor: record and log the Monitor.

    Example:
        >>> LrkitCallback(guard=False).hooks.metric
        'eval_loss'
    """

    def __init__(self, metric: str | None = "eval_loss", guard: bool | Mapping[str, Any] = True, monitor: bool = True) -> None:
        self.hooks = TrainerHooks(metric, guard, monitor, owner="LrkitCallback")
        self._losses: list[torch.Tensor] = []
        self._row: dict[str, float] = {}
        self._hook: Any = None

    @property
    def findings(self) -> list[Any]:
        """The Monitor's diagnosis at the end of training (`lrkit.analysis.diagnose.Finding`s)."""
        return self.hooks.findings

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, lr_scheduler: Any = None, **kwargs: Any) -> None:
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
        self.hooks.attach(model, scheduler)
        if self._hook is not None:
            self._hook.remove()  # a second train() on the same callback
        self._hook = model.register_forward_hook(self._keep_loss)

    def _keep_loss(self, module: torch.nn.Module, inputs: Any, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else None
        if module.training and isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())

    def _loss(self) -> torch.Tensor | float:
        return torch.stack(self._losses).mean() if self._losses else float("nan")

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.hooks.check(self._loss())  # a dropped batch's gradients are gone: optimizer.step() changes nothing

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._row = self.hooks.record(state.global_step, self._loss()) or self._row
        self._losses = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        extra = {f"lrkit/{k}": v for k, v in self._row.items() if k != "loss"}
        if logs is not None and "loss" in logs and extra:
            logs.update(extra)
            state.log_history[-1].update(extra)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.hooks.observe(metrics or {})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        findings = self.hooks.diagnose()
        if findings:
            state.log_history.append({**summary(findings), "lrkit/findings": [str(f) for f in findings], "step": state.global_step})
        for finding in findings:
            _log.warning(f"lrkit: {finding}")
