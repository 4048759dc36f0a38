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
from lrkit.engine import Resources, read_engine, read_resources
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
    engine: str = "local",
    address: str | None = None,
    shard_size: int | None = None,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
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
        progress: called with (member-epochs done, member-epochs in all) after every epoch (on Ray: as the cluster reports).
        engine: "local" (this process) or "ray": the pending members in shards, one Ray task each, each finished shard
            stored by this process in one transaction (`lrkit.lab.ray_engine`, docs/ray.md); resuming works alike.
        address: with Ray, None starts a local Ray sized to this machine; "auto", "host:port" or "ray://host:port" joins a cluster.
        shard_size: with Ray, the most members per task (default: 2 shards per worker, at most `chunk`).
        num_cpus: with Ray, CPUs per shard and its torch threads (default 1).
        num_gpus: with Ray, GPUs per shard (default 1 when `device` is CUDA and the cluster has GPUs, else 0).

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
    engine = read_engine("study", engine, address, LabError)
    resources = read_resources("study", shard_size, num_cpus, num_gpus, engine, LabError)
    labels = [d.label(v) for v in chosen]
    if not labels or len(set(labels)) != len(labels):
        validate.fail("study", "values", "must be a non-empty list of distinct values", values, LabError)
    spec = {"study": name, "problem": problem, "task": prob.task, "what": d.what, "axis": d.axis, "values": labels,
            "seeds": seeds, "epochs": plan.epochs, "order": order}  # fmt: skip
    store = Store(Path(out) / f"{name}.sqlite" if out is not None else ":memory:", spec, fresh=fresh)
    try:
        pending = _Pending(d, plan, chosen, labels, seeds, store)
        options = {"epochs": plan.epochs, "order": order, "device": device}
        if engine == "ray":
            pending.on_ray(options, resources, address=address, chunk=chunk, progress=progress)
        else:
            pending.here(options, chunk=chunk, progress=progress)
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


class _Pending:
    """The members the store lacks, grouped by batch-size plan (a population shares it); each trained part is stored at once."""

    def __init__(self, d: StudyDef, plan: Plan, chosen: list[Any], labels: list[str], seeds: int, store: Store) -> None:
        self.d, self.plan, self.chosen, self.labels, self.seeds, self.store = d, plan, chosen, labels, seeds, store
        self.total = len(chosen) * seeds * plan.epochs
        finished = _stored(store, labels, seeds, plan.epochs)
        self.done = len(finished) * plan.epochs  # member-epochs stored
        self.groups: dict[Any, list[int]] = {}
        for i in range(len(chosen) * seeds):
            if i not in finished:
                sizes = d.batches(chosen[i // seeds], plan)
                self.groups.setdefault(tuple(sizes) if sizes else None, []).append(i)

    def members(self, part: Sequence[int]) -> list[Member]:
        return [self.d.member(self.chosen[i // self.seeds], i % self.seeds, self.plan) for i in part]

    def commit(self, part: Sequence[int], result: PopulationResult) -> None:
        """Store a trained part in one transaction (this process is the store's only writer, on Ray too)."""
        self.store.add(_rows(list(part), self.labels, self.seeds, result), {k: getattr(result, k) for k in METRICS}, result.updates)
        self.done += len(part) * self.plan.epochs

    def here(self, options: dict[str, Any], *, chunk: int, progress: Progress | None) -> None:
        """Train in this process, `chunk` members at a time."""
        if progress is not None:
            progress(self.done, self.total)
        for sizes, indices in self.groups.items():
            for start in range(0, len(indices), chunk):
                part = indices[start : start + chunk]

                def on_epoch(epoch: int, n: int = len(part), before: int = self.done) -> None:
                    if progress is not None:
                        progress(before + epoch * n, self.total)

                self.commit(part, train(self.plan.problem, self.members(part), batch_size=list(sizes) if sizes else None,
                                        on_epoch=on_epoch, **options))  # fmt: skip

    def on_ray(self, options: dict[str, Any], resources: Resources, *, address: str | None, chunk: int, progress: Progress | None) -> None:
        """Train on Ray in shards of at most `chunk` members; the shards' member-epochs drive `progress`."""
        from lrkit.lab.ray_engine import Work, train_shards

        if progress is not None:
            progress(self.done, self.total)
        work = [Work(tuple(ix), self.members(ix), list(sizes) if sizes else None) for sizes, ix in self.groups.items()]
        if not work:  # a finished study starts no Ray
            return
        before = self.done

        def advance(units: int) -> None:
            if progress is not None:  # a retried shard reports its epochs again: never past what is left
                progress(min(self.total, max(self.done, before + units)), self.total)

        train_shards("study", self.plan.problem, work, options, resources, lambda part, r: self.commit(part, r.result), trainer=train,
                     address=address, largest=chunk, progress=advance if progress is not None else None)  # fmt: skip


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
