"""The classic learning-rate studies, each a mapping from a value to population members.

A study varies one thing (the lr, the momentum, the decay, the plateau
patience, the optimizer, the schedule, lr decay against batch growth, or weight
averaging at several lrs) over
a set of values, with several seeds per value; every (value, seed) is one
member of a population. Member seeds are the seed indices, so each value is
tried with the same initializations and data orders (paired comparisons).

Example:
    >>> d = STUDIES["lr"]
    >>> d.defaults[:3], d.axis
    ((1.0, 0.1, 0.01), 'log')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lrkit.schedules as sch
from lrkit import validate
from lrkit.control.plateau import Plateau
from lrkit.errors import LabError
from lrkit.lab.averaging import SWA_DEFAULTS, read_arm, swa_arm
from lrkit.lab.population import Member
from lrkit.optim import FAMILIES, Optim

if TYPE_CHECKING:
    from lrkit.lab.problems import Problem


@dataclasses.dataclass(frozen=True)
class Plan:
    """The training budget a study's members are built for.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> plan = Plan(get_problem("blobs"), 200)
        >>> plan.steps_per_epoch, plan.total_steps
        (16, 3200)
    """

    problem: Problem
    epochs: int

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches per epoch at the problem's batch size (the last one may be smaller)."""
        from lrkit.torch.data import steps_per_epoch  # torch is loaded by the problem already; not at import, for the CLI

        return steps_per_epoch(len(self.problem.x_train), self.problem.batch_size)

    @property
    def total_steps(self) -> int:
        """Optimizer steps over the whole budget."""
        return self.epochs * self.steps_per_epoch


@dataclasses.dataclass(frozen=True)
class StudyDef:
    """One study: its default values, how a value is read and labelled, and the member (and batch sizes) it makes.

    `lr_varies` marks studies whose lr changes during training (a schedule, a plateau, a decay):
    their report adds the lr over epochs per value.

    Example:
        >>> STUDIES["momentum"].label(0.9), STUDIES["patience"].read("5")
        ('0.9', 5)
    """

    name: str
    what: str  # the x-axis label
    defaults: tuple[Any, ...]
    axis: str  # "log", "linear" or "category": how the sensitivity curve places values
    read: Callable[[str], Any]
    member: Callable[[Any, int, Plan], Member]
    batches: Callable[[Any, Plan], list[int] | None] = lambda value, plan: None
    lr_varies: bool = False

    def label(self, value: Any) -> str:
        """The value as written in tables and legends.

        Example:
            >>> STUDIES["lr"].label(1e-05), STUDIES["optimizer"].label("adam")
            ('1e-05', 'adam')
        """
        return f"{value:g}" if isinstance(value, float) else str(value)


def _number(kind: type, low: float, high: float, name: str) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        value = _parsed(kind, text)
        if value is None:
            validate.fail("study", "values", f"must be {kind.__name__} numbers for the {name} study", text, LabError)
        if not low <= value < high:
            validate.fail("study", "values", f"must lie in [{low}, {high}) for the {name} study", text, LabError)
        return value

    return read


def _parsed(kind: type, text: str) -> float | int | None:
    """`text` read as a `kind` number, or None (the caller raises, outside this handler, with the study's name)."""
    try:
        return float(text) if kind is float else int(text)
    except ValueError:
        return None


def _optimizer_value(text: str) -> str:
    """An optimizer study value: a family name, optionally with arguments ("sgd(momentum=0.9)"), as its short spec."""
    spec = text.strip().lower()
    if spec.partition("(")[0].strip() not in FAMILIES:
        names = ", ".join(FAMILIES)
        validate.fail(
            "study", "values", f"must be optimizer names ({names}) for the optimizer study, optionally with arguments", text, LabError
        )
    return Optim.of(spec, "study", "values").spec


def _optimizer_member(value: str, seed: int, plan: Plan) -> Member:
    """The "library defaults" of the optimizer study: each family at torch.optim's own default lr."""
    optimizer = Optim.parse(value)
    return Member(lr=optimizer.default_lr, optimizer=optimizer, seed=seed)


def named_schedules(plan: Plan) -> dict[str, sch.Schedule]:
    """The schedule study's shapes, each peaking at the problem's lr and spanning the whole budget.

    Example:
        >>> from lrkit.lab.problems import get_problem
        >>> s = named_schedules(Plan(get_problem("blobs"), 200))
        >>> list(s)[:4], round(s["cosine"](0), 6)
        (['constant', 'step', 'exponential', 'cosine'], 0.01)
    """
    lr, t = plan.problem.lr, plan.total_steps
    low, half = lr / 10, max(1, t // 8)
    return {
        "constant": sch.constant(lr),
        "step": sch.step_decay(start=lr, factor=0.5, every=max(1, t // 4)),
        "exponential": sch.exponential(start=lr, rate=0.01, every=t),
        "cosine": sch.cosine(start=lr, steps=t),
        "sgdr": sch.sgdr(start=lr, first_cycle=math.ceil(t / 7), cycle_mult=2.0),  # cycles of 1/7, 2/7, 4/7: no restart at the end
        "cyclic-triangular": sch.cyclic(low=low, high=lr, half_cycle=half),
        "cyclic-triangular2": sch.cyclic(low=low, high=lr, half_cycle=half, mode="triangular2"),
        "cyclic-exp_range": sch.cyclic(low=low, high=lr, half_cycle=half, mode="exp_range", gamma=0.01 ** (1 / t)),
        "one-cycle": sch.one_cycle(peak=lr, total_steps=t),
        "wsd": sch.wsd(peak=lr, total_steps=t, warmup_steps=max(1, t // 20), decay_steps=max(1, t // 5)),
    }


SCHEDULE_NAMES = ("constant", "step", "exponential", "cosine", "sgdr", "cyclic-triangular", "cyclic-triangular2",
                  "cyclic-exp_range", "one-cycle", "wsd")  # fmt: skip


def _schedule_value(text: str) -> str:
    """A schedule study value: a built-in name, or any lrkit schedule spec (checked here, built per plan)."""
    name = text.strip()
    if name in SCHEDULE_NAMES:
        return name
    if "(" not in name:
        validate.fail("study", "values", f"must be schedule names ({', '.join(SCHEDULE_NAMES)}) or lrkit specs", text, LabError)
    sch.parse(name)  # a bad spec raises its ScheduleError, which says what is wrong with it
    return name


def _schedule_member(value: str, seed: int, plan: Plan) -> Member:
    schedule = named_schedules(plan)[value] if value in SCHEDULE_NAMES else sch.parse(value)
    return Member(lr=schedule, seed=seed)


BATCH_ARMS = ("constant", "decay-lr", "grow-batch", "hybrid")
BATCH_FACTOR = 5  # Smith et al. (2018) replace each lr drop by 5 with a batch 5x larger


def _milestones(plan: Plan) -> list[int]:
    return [plan.epochs // 2, (3 * plan.epochs) // 4]


def _batch_arm(text: str) -> str:
    if text.strip() not in BATCH_ARMS:
        validate.fail("study", "values", f"must be arms of the batch study ({', '.join(BATCH_ARMS)})", text, LabError)
    return text.strip()


def _batch_member(value: str, seed: int, plan: Plan) -> Member:
    """'decay-lr' divides the lr by 5 at 1/2 and 3/4 of the epochs; 'hybrid' does so only at the first milestone."""
    drops = {"constant": [], "decay-lr": _milestones(plan), "grow-batch": [], "hybrid": _milestones(plan)[1:]}[value]
    if not drops:
        return Member(lr=plan.problem.lr, seed=seed)
    lr = sch.multistep(start=plan.problem.lr, milestones=tuple(e * plan.steps_per_epoch for e in drops), factor=1 / BATCH_FACTOR)
    return Member(lr=lr, seed=seed)


def _batch_sizes(value: str, plan: Plan) -> list[int] | None:
    """'grow-batch' multiplies the batch by 5 at both milestones; 'hybrid' at the first (capped at the training set)."""
    grows = {"constant": [], "decay-lr": [], "grow-batch": _milestones(plan), "hybrid": _milestones(plan)[:1]}[value]
    if not grows:
        return None
    n, size = len(plan.problem.x_train), plan.problem.batch_size
    return [min(n, size * BATCH_FACTOR ** sum(epoch >= g for g in grows)) for epoch in range(plan.epochs)]


def _swa_member(value: str, seed: int, plan: Plan) -> Member:
    """An arm of the swa study (`lrkit.lab.averaging.swa_arm`): its lr schedule and weight averaging over the budget."""
    schedule, average = swa_arm(value, plan.problem.lr, plan.total_steps, plan.steps_per_epoch)
    return Member(lr=schedule, seed=seed, average=average)


def _plateau(patience: int) -> Plateau:
    # the classic: ReduceLROnPlateau on the validation loss, factor 0.1, min_delta 1e-7 (absolute)
    return Plateau(patience=patience, factor=0.1, threshold=1e-7, threshold_mode="abs")


STUDIES: dict[str, StudyDef] = {
    d.name: d
    for d in (
        StudyDef("lr", "learning rate", tuple(10.0**-k for k in range(8)), "log", _number(float, 1e-12, 1e3, "lr"),
                 lambda v, seed, plan: Member(lr=v, seed=seed)),
        StudyDef("momentum", "momentum", (0.0, 0.5, 0.9, 0.99), "linear", _number(float, 0.0, 1.0, "momentum"),
                 lambda v, seed, plan: Member(lr=plan.problem.lr, optimizer=Optim("sgd", momentum=v), seed=seed)),
        StudyDef("decay", "inverse-time decay per update", (1e-1, 1e-2, 1e-3, 1e-4), "log", _number(float, 1e-12, 1e3, "decay"),
                 lambda v, seed, plan: Member(lr=sch.inverse_time(start=plan.problem.lr, decay=v), seed=seed), lr_varies=True),
        StudyDef("patience", "plateau patience (epochs)", (2, 5, 10, 15), "linear", _number(int, 0, 10**6, "patience"),
                 lambda v, seed, plan: Member(lr=plan.problem.lr, plateau=_plateau(v), seed=seed), lr_varies=True),
        StudyDef("optimizer", "optimizer", ("sgd", "rmsprop", "adagrad", "adam"), "category", _optimizer_value, _optimizer_member),
        StudyDef("schedule", "schedule", SCHEDULE_NAMES, "category", _schedule_value, _schedule_member, lr_varies=True),
        StudyDef("batch", "lr decay vs batch growth", BATCH_ARMS, "category", _batch_arm, _batch_member, _batch_sizes, lr_varies=True),
        StudyDef("swa", "weight averaging @ lr", SWA_DEFAULTS, "category", read_arm, _swa_member, lr_varies=True),
    )
}  # fmt: skip
"""The classic studies by name: what each varies, its default values and how a value becomes a member.

Example:
    >>> list(STUDIES)[:3], STUDIES["momentum"].defaults
    (['lr', 'momentum', 'decay'], (0.0, 0.5, 0.9, 0.99))
"""
