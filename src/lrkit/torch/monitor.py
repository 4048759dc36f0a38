"""`lrkit.Monitor`: record what the learning rate does to a run, and explain problems.

Each `record(step, loss=...)` reads the lr and momentum of every param group, the
controllers' scales of an attached `lrkit.Scheduler`, and with a model the
gradient norm and update-to-weight ratio per group. The columns go to CSV,
TensorBoard or a figure, and `diagnose()` turns them into findings with evidence
(the rules live, pure, in `lrkit.analysis.diagnose`).
"""

from __future__ import annotations

import csv
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from lrkit import validate
from lrkit.analysis.diagnose import Finding, diagnose
from lrkit.errors import ControlError
from lrkit.torch.implied import ImpliedLR
from lrkit.torch.scheduler import Scheduler

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Monitor:
    """A recorder of lr, momentum, loss, gradient norms and update ratios, one row per `record`.

    Args:
        optimizer: the optimizer whose groups are read.
        model: if given, its parameters' gradient norm and update-to-weight ratio
            `||w - w_prev|| / ||w_prev||` are recorded per group (a CPU copy of the
            weights is kept between records; the ratio is averaged per step elapsed).
        scheduler: an `lrkit.Scheduler`; its plateau scale and multiplier are recorded.
        implied_lr: opt-in `implied_lr` column, next to `lr`: each group's median of Duda's
            sigma_theta / sigma_g (`lrkit.ImpliedLR`; NaN during its warm-up). True: the Monitor keeps
            one (beta 0.9) and updates it at each record, so record every step (a record that skips
            steps raises: each gradient must be paired with the weights it was taken at). An
            `ImpliedLR` of this optimizer: read only, its owner updates it (e.g. `lrkit.SelfTuningLR`).
            Needs `model`; `diagnose()` then compares the lr with it.

    With one param group the columns are `lr`, `momentum`, `grad_norm`, `update_ratio`;
    with several, each group `i` gets `lr/i`, `momentum/i`, ...

    Example:
        >>> import torch, lrkit
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> mon = lrkit.Monitor(opt, model)
        >>> for step in range(3):
        ...     opt.zero_grad()
        ...     loss = model(torch.ones(4, 2)).pow(2).mean()
        ...     loss.backward()
        ...     opt.step()
        ...     mon.record(step, loss=loss)
        >>> sorted(mon.history)
        ['grad_norm', 'loss', 'lr', 'momentum', 'step', 'update_ratio']
        >>> mon.history["lr"].tolist()
        [0.1, 0.1, 0.1]
    """

    implied: ImpliedLR | None = None  # a class default: subclasses that read another framework have none
    _owns_implied = False

    def __init__(
        self, optimizer: torch.optim.Optimizer, model: torch.nn.Module | None = None, scheduler: Scheduler | None = None,
        implied_lr: bool | ImpliedLR = False,
    ) -> None:  # fmt: skip
        validate.instance("Monitor", "optimizer", optimizer, ControlError, torch.optim.Optimizer, "a torch.optim.Optimizer")
        validate.instance("Monitor", "model", model, ControlError, (torch.nn.Module, type(None)), "a torch.nn.Module or None")
        validate.instance("Monitor", "scheduler", scheduler, ControlError, (Scheduler, type(None)), "an lrkit.Scheduler or None")
        self.optimizer = optimizer
        self.model = model
        self.scheduler = scheduler
        self.implied, self._owns_implied = _implied_estimator(optimizer, model, implied_lr)
        self._columns: dict[str, list[float]] = {"step": []}
        self._previous: list[torch.Tensor] = []
        self._previous_step = -1

    def __len__(self) -> int:
        return len(self._columns["step"])

    # -- recording -------------------------------------------------------------
    def record(self, step: int, loss: float | torch.Tensor | None = None, **metrics: float | torch.Tensor) -> None:
        """Add one row: `step`, `loss`, any extra named metrics, and what is read from the optimizer.

        The columns the monitor reads itself (`lr`, `momentum`, `grad_norm`, `update_ratio`,
        `multiplier`, `plateau_scale`, and their `/i` group forms) cannot be given as metrics:
        `record(step, lr=5.0)` raises ControlError rather than drop or overwrite a value
        (record your own under another name, e.g. `target_lr=5.0`).

        Example:
            >>> import torch
            >>> mon = Monitor(torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=0.01))
            >>> mon.record(0, loss=1.5, accuracy=0.5)
            >>> {k: v.tolist() for k, v in mon.history.items()}
            {'step': [0], 'loss': [1.5], 'accuracy': [0.5], 'lr': [0.01], 'momentum': [0.9]}
        """
        step = validate.integer("Monitor.record", "step", step, ControlError, minimum=0)
        if len(self) and step <= self._columns["step"][-1]:
            validate.fail("Monitor.record", "step", f"must increase (last recorded: {self._columns['step'][-1]})", step, ControlError)
        _check_names(metrics)
        given = {"loss": loss, **metrics} if loss is not None else metrics
        row = {name: validate.scalar("Monitor.record", name, value, ControlError) for name, value in given.items()}
        row.update(self._optimizer_row())
        if self.model is not None:
            row.update(self._model_row(self.model, step))
        self._append(step, row)

    def _name(self, name: str, group: int) -> str:
        return name if len(self.optimizer.param_groups) == 1 else f"{name}/{group}"

    def _optimizer_row(self) -> dict[str, float]:
        row: dict[str, float] = {}
        for i, group in enumerate(self.optimizer.param_groups):
            row[self._name("lr", i)] = float(group["lr"])
            if "momentum" in group:
                row[self._name("momentum", i)] = float(group["momentum"])
            elif "betas" in group:
                row[self._name("momentum", i)] = float(group["betas"][0])
        if self.scheduler is not None:
            row["multiplier"] = self.scheduler.multiplier
            if self.scheduler.plateau_state is not None:
                row["plateau_scale"] = float(self.scheduler.plateau_state.scale)
        return row

    def _watched(self, model: torch.nn.Module) -> list[list[torch.Tensor]]:
        """Each group's parameters that belong to the model."""
        ids = {id(p) for p in model.parameters()}
        return [[p for p in group["params"] if id(p) in ids] for group in self.optimizer.param_groups]

    @torch.no_grad()
    def _model_row(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        row: dict[str, float] = {}
        current = []
        for i, params in enumerate(self._watched(model)):
            grads = [p.grad for p in params if p.grad is not None]
            row[self._name("grad_norm", i)] = float(torch.nn.utils.get_total_norm(grads)) if grads else math.nan
            flat = torch.cat([p.detach().reshape(-1) for p in params]).to("cpu", torch.float32, copy=True) if params else torch.zeros(0)
            current.append(flat)
            row[self._name("update_ratio", i)] = self._update_ratio(i, flat, step)
        row.update(self._implied_row(step))
        self._previous, self._previous_step = current, step
        return row

    def _implied_row(self, step: int) -> dict[str, float]:
        if self.implied is None:
            return {}
        if self._owns_implied:
            if self._previous_step >= 0 and step != self._previous_step + 1:
                why = f"must follow the previous record ({self._previous_step}) by 1 when the Monitor updates the implied lr"
                validate.fail("Monitor.record", "step", why, step, ControlError)
            self.implied.update()
        return {self._name("implied_lr", i): value for i, value in enumerate(self.implied.group_estimates())}

    def _update_ratio(self, group: int, flat: torch.Tensor, step: int) -> float:
        """||w - w_prev|| / ||w_prev||, divided by the steps since the previous record."""
        if group >= len(self._previous) or self._previous[group].shape != flat.shape:
            return math.nan
        previous = self._previous[group]
        norm = float(previous.norm())
        return float((flat - previous).norm()) / norm / (step - self._previous_step) if norm > 0 else math.nan

    def _append(self, step: int, row: dict[str, float]) -> None:
        n = len(self)
        for name in row:
            if name not in self._columns:
                self._columns[name] = [math.nan] * n  # a column that starts late is NaN before
        self._columns["step"].append(step)
        for name, column in self._columns.items():
            if name != "step":
                column.append(row.get(name, math.nan))

    # -- reading ---------------------------------------------------------------
    @property
    def history(self) -> dict[str, npt.NDArray[Any]]:
        """The recorded columns as numpy arrays (`step` as integers, the rest floats; NaN where not recorded).

        Example:
            >>> import torch
            >>> mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5))
            >>> mon.record(0, loss=2.0); mon.record(5)
            >>> mon.history["loss"].tolist(), mon.history["step"].tolist()
            ([2.0, nan], [0, 5])
        """
        return {name: np.asarray(col, dtype=np.int64 if name == "step" else np.float64) for name, col in self._columns.items()}

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the history as CSV: a header of column names, one line per record.

        Example:
            >>> import torch, tempfile, pathlib
            >>> mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5))
            >>> mon.record(0, loss=2.0)
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "h.csv"
            >>> mon.to_csv(path); path.read_text().splitlines()
            ['step,loss,lr,momentum', '0,2.0,0.5,0.0']
        """
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self._columns)
            writer.writerows(zip(*self._columns.values()))

    def to_tensorboard(self, writer: Any, prefix: str = "") -> None:
        """Write every recorded number as a scalar (`writer.add_scalar(tag, value, step)`), NaNs left out.

        `writer` is a `torch.utils.tensorboard.SummaryWriter` or anything with `add_scalar`.

        Example:
            >>> import torch
            >>> class Printer:
            ...     def add_scalar(self, tag, value, step): print(tag, value, step)
            >>> mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5))
            >>> mon.record(3, loss=2.0)
            >>> mon.to_tensorboard(Printer(), prefix="train/")
            train/loss 2.0 3
            train/lr 0.5 3
            train/momentum 0.0 3
        """
        if not callable(getattr(writer, "add_scalar", None)):
            requirement = "must have an add_scalar(tag, value, step) method"
            validate.wrong_type("Monitor.to_tensorboard", "writer", requirement, writer, ControlError)
        steps = self._columns["step"]
        for name, column in self._columns.items():
            if name != "step":
                for step, value in zip(steps, column):
                    if math.isfinite(value):
                        writer.add_scalar(prefix + name, value, step)
        if callable(getattr(writer, "flush", None)):
            writer.flush()

    def plot(self) -> Figure:
        """A 2 x 2 figure over steps: lr, loss, gradient norm, update-to-weight ratio (with the 1e-3 rule of thumb).

        Example:
            >>> import torch
            >>> mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5))
            >>> mon.record(0, loss=2.0); mon.record(1, loss=1.0)
            >>> [ax.get_title() for ax in mon.plot().axes]
            ['learning rate', 'loss', 'gradient norm', 'update / weight per step']
        """
        from lrkit.plot import new_figure

        fig = new_figure(2, 2, size=(5.0, 3.5))
        history = self.history
        panels = [("lr", "learning rate"), ("loss", "loss"), ("grad_norm", "gradient norm"), ("update_ratio", "update / weight per step")]
        for ax, (name, title) in zip(fig.axes, panels):
            _plot_panel(ax, history, name, title)
        return fig

    def diagnose(self, **thresholds: float) -> list[Finding]:
        """Findings about the lr from the recorded loss, lr and update ratios (see `lrkit.analysis.diagnose.diagnose`).

        Example:
            >>> import torch
            >>> mon = Monitor(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
            >>> for step in range(200):
            ...     mon.record(step, loss=1.0 / (1 + step))
            >>> [f.kind for f in mon.diagnose()]
            ['healthy']
        """
        history = self.history
        loss = history.get("loss")
        if loss is None or not len(loss):
            validate.fail("Monitor.diagnose", "loss", "must have been recorded (record(step, loss=...))", None, ControlError)
        return diagnose(
            history["step"], loss, lr=_first_group(history, "lr"), update_ratio=_first_group(history, "update_ratio"),
            implied_lr=_first_group(history, "implied_lr"), **thresholds,
        )  # fmt: skip


LearningRateMonitor = Monitor  # the Keras / Lightning name for the same recorder
READ = ("lr", "momentum", "grad_norm", "update_ratio", "multiplier", "plateau_scale", "implied_lr")  # the columns a Monitor reads itself


def _implied_estimator(optimizer: torch.optim.Optimizer, model: torch.nn.Module | None, implied: Any) -> tuple[ImpliedLR | None, bool]:
    """The Monitor's implied-lr estimator and whether the Monitor updates it."""
    if implied is False:
        return None, False
    if model is None:
        validate.fail(
            "Monitor", "model", "must be given with implied_lr (the estimate reads its weights and gradients)", None, ControlError
        )
    if implied is True:
        return ImpliedLR(model, optimizer=optimizer), True
    validate.instance("Monitor", "implied_lr", implied, ControlError, ImpliedLR, "a bool or an lrkit.ImpliedLR")
    if implied.optimizer is not optimizer and not (implied.optimizer is None and len(optimizer.param_groups) == 1):
        validate.fail(
            "Monitor", "implied_lr", "must be an ImpliedLR of this optimizer (one implied lr per param group)", implied, ControlError
        )
    return implied, False


def _check_names(metrics: dict[str, Any]) -> None:
    """Refuse metric names that are columns the monitor reads itself (the user's value would be lost)."""
    for name in metrics:
        if name.split("/")[0] in READ:
            requirement = f"is a column the Monitor reads itself ({', '.join(READ)}); record your value under another name"
            validate.fail("Monitor.record", name, requirement, metrics[name], ControlError)


def _first_group(history: dict[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.float64] | None:
    return history.get(name, history.get(f"{name}/0"))


def _plot_panel(ax: Any, history: dict[str, npt.NDArray[Any]], name: str, title: str) -> None:
    columns = [k for k in history if k == name or k.startswith(f"{name}/")]
    for column in columns:
        ax.plot(history["step"], history[column], label=column, linewidth=1)
    if not columns:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")
    elif name != "loss" and all(np.nanmin(history[c], initial=np.inf) > 0 for c in columns):
        ax.set_yscale("log")
    if name == "update_ratio" and columns:
        ax.axhline(1e-3, color="gray", linestyle="--", linewidth=1, label="1e-3")
    if len(columns) > 1 or (name == "update_ratio" and columns):
        ax.legend(fontsize="small")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
