"""`lrkit.lab.study`: run a classic study as populations, store it, resume it, report it.

Example:
    >>> r = study("lr", values=[0.1, 1e-6], seeds=2, epochs=5)
    >>> [round(row["test_acc"], 2) > 0.5 for row in r.summary()]
    [True, False]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lrkit import validate
from lrkit.errors import LabError
from lrkit.lab.population import ORDERS, Member, PopulationResult, train
from lrkit.lab.problems import get_problem
from lrkit.lab.results import StudyResult
from lrkit.lab.store import METRICS, MemberRow, Store, damaged
from lrkit.lab.studies import STUDIES, Plan, StudyDef

Progress = Callable[[int, int], None]  # (member-epochs done, member-epochs in all)


def study(
    name: str,
    problem: str = "blobs",
    values: Sequence[Any] | None = None,
    seeds: int = 5,
    epochs: int | None = None,
    out: str | Path | None = None,
    *,
    fresh: bool = False,
    report: bool = True,
    chunk: int = 100,
    order: str = "member",
    device: Any = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Run the study `name` on `problem` for every value and seed; return (and with `out`, store and report) the results.

    Members are trained in populations of up to `chunk`; each finished population is
    stored at once in `out/{name}.sqlite`. Re-running with the same arguments resumes:
    it trains only the members the store lacks (or holds only in part). `fresh=True` starts over.
    One process writes a store at a time: a second raises "in use" before any work; a damaged
    store, or one of another version, raises a `LabError` and is left untouched (`lrkit.lab.store`).

    Args:
        name: one of `lrkit.lab.STUDIES` (lr, momentum, decay, patience, optimizer, schedule, batch).
        problem: a built-in problem or "pkg.module:function".
        values: the values to try (default: the study's classic set); numbers, names or strings.
        seeds: seeds per value (member seeds 0..seeds-1, shared across values).
        epochs: training budget (default: the problem's).
        out: a directory for the store, figures, tables and the HTML report; None writes nothing.
        fresh: discard a stored study in `out` and start over.
        report: with `out`, also write the figures, tables and HTML report (else only the store).
        chunk: the most members trained in one population.
        order: "member" (each seed its own minibatch order) or "shared".
        device: where to train (default: the CPU).
        progress: called with (member-epochs done, member-epochs in all) after every epoch.

    Example:
        >>> r = study("momentum", values=[0.0, 0.9], seeds=1, epochs=2)
        >>> r.values, len(r.to_pandas())
        (['0', '0.9'], 4)
    """
    d, plan, chosen = _setup(name, problem, values, epochs)
    prob = plan.problem
    seeds = validate.integer("study", "seeds", seeds, LabError)
    chunk = validate.integer("study", "chunk", chunk, LabError)
    validate.choice("study", "order", order, LabError, ORDERS)
    fresh, report = validate.flag("study", "fresh", fresh, LabError), validate.flag("study", "report", report, LabError)
    labels = [d.label(v) for v in chosen]
    if not labels or len(set(labels)) != len(labels):
        validate.fail("study", "values", "must be a non-empty list of distinct values", values, LabError)
    spec = {"study": name, "problem": problem, "task": prob.task, "what": d.what, "axis": d.axis, "values": labels,
            "seeds": seeds, "epochs": plan.epochs, "order": order}  # fmt: skip
    store = Store(Path(out) / f"{name}.sqlite" if out is not None else ":memory:", spec, fresh=fresh)
    try:
        _run_pending(d, plan, chosen, labels, seeds, store, chunk=chunk, order=order, device=device, progress=progress)
        result = StudyResult(
            spec=store.spec, table=store.records(), initial_test_loss={m.member: m.initial_test_loss for m in store.members()}
        )
    finally:
        store.close()
    if out is not None and report:
        result.save(out)
    return result


def _setup(name: str, problem: str, values: Sequence[Any] | None, epochs: int | None) -> tuple[StudyDef, Plan, list[Any]]:
    """The study's definition, its training plan and the values it tries (read and checked)."""
    d = STUDIES[validate.choice("study", "name", name, LabError, list(STUDIES))]
    prob = get_problem(problem)
    plan = Plan(prob, validate.integer("study", "epochs", prob.epochs if epochs is None else epochs, LabError))
    if values is not None:
        values = validate.sequence("study", "values", values, LabError)
    return d, plan, list(d.defaults) if values is None else [d.read(str(v)) for v in values]


def _run_pending(d: StudyDef, plan: Plan, chosen: list[Any], labels: list[str], seeds: int, store: Store, **kw: Any) -> None:
    """Train the members the store lacks, grouped by batch-size plan (a population shares it), `chunk` at a time."""
    progress: Progress | None = kw.pop("progress")
    chunk: int = kw.pop("chunk")
    total = len(chosen) * seeds * plan.epochs
    finished = _stored(store, labels, seeds, plan.epochs)
    done = len(finished) * plan.epochs
    pending = [i for i in range(len(chosen) * seeds) if i not in finished]
    if progress is not None:
        progress(done, total)
    groups: dict[Any, list[int]] = {}
    for i in pending:
        sizes = d.batches(chosen[i // seeds], plan)
        groups.setdefault(tuple(sizes) if sizes else None, []).append(i)
    for sizes, indices in groups.items():
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            members = [d.member(chosen[i // seeds], i % seeds, plan) for i in part]

            def on_epoch(epoch: int, n: int = len(part), before: int = done) -> None:
                if progress is not None:
                    progress(before + epoch * n, total)

            result = train(plan.problem, members, epochs=plan.epochs, batch_size=list(sizes) if sizes else None, on_epoch=on_epoch, **kw)
            store.add(_rows(part, labels, seeds, result), {k: getattr(result, k) for k in METRICS}, result.updates)
            done += len(part) * plan.epochs


def _stored(store: Store, labels: list[str], seeds: int, epochs: int) -> set[int]:
    """The members stored whole (the others are trained again); a stored member that is not this study's is damage."""
    finished = store.finished(epochs)
    for row in store.members():
        i = row.member
        if not 0 <= i < len(labels) * seeds or (row.value, row.value_index, row.seed) != (labels[i // seeds], i // seeds, i % seeds):
            damaged(store.path, f"member {i} ({row.value!r}, seed {row.seed}) is not a member of this study")
    return finished


def _rows(part: list[int], labels: list[str], seeds: int, result: PopulationResult) -> list[MemberRow]:
    return [
        MemberRow(i, labels[i // seeds], i // seeds, i % seeds, float(result.initial_test_loss[k]), int(result.diverged_epoch[k]))
        for k, i in enumerate(part)
    ]


def members_of(
    name: str, problem: str = "blobs", values: Sequence[Any] | None = None, seeds: int = 5, epochs: int | None = None
) -> list[Member]:
    """The members a study trains, in study order (value-major, then seed): to train or inspect them yourself.

    Example:
        >>> [m.optimizer.momentum for m in members_of("momentum", values=[0.5, 0.9], seeds=1)]
        [0.5, 0.9]
    """
    d, plan, chosen = _setup(name, problem, values, epochs)
    return [d.member(v, s, plan) for v, s in itertools.product(chosen, range(validate.integer("study", "seeds", seeds, LabError)))]


__all__ = ["members_of", "study"]
