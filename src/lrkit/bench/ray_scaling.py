"""The lab's Ray engine against the local one: the same study side by side, member-epochs per second, and the model that predicts them.

The study (default: `lr` on blobs, 16 lrs x 50 seeds = 800 members) runs five ways in one process:
the local engine on 2 torch threads and on 1; Ray with one worker given the local engine's cores
and threads (a 2-CPU Ray, `num_cpus=2` per shard: one shard at a time, 2 torch threads); Ray with
2 one-core workers and with 1 (a 2-CPU and a 1-CPU Ray, `num_cpus=1`, 1 torch thread). `ray.init`
and the workers' first start (importing torch) are timed apart from the study; so are a shard's
fixed cost (tiny shards of one member and epoch) and the driver's commit rate (`Store.add` on a file).
Every run's records are compared with the local engine's (shards of `chunk` members: bit-identical).

The model (docs/ray.md): T = t_init + ceil(S / W) * (t_shard + n * E / r), S = ceil(M / n) shards of n members
for E epochs on W workers of r member-epochs per second each, throughput at most the commit rate.

Example:
    >>> Config.quick().members, Config().members
    (8, 800)
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lrkit import validate
from lrkit.errors import LabError

TARGET_SAME_CORES = 1.15  # Ray with the local engine's cores and threads costs at most 15% more
TARGET_TWO_WORKERS = 1.6  # 2 one-core workers reach at least 1.6x one


@dataclasses.dataclass(frozen=True)
class Config:
    """The benchmark's study: `values` lrs (log-spaced, 1 to 1e-4) x `seeds`, `epochs` on `problem`, `chunk` members a shard.

    Example:
        >>> Config(values=4, seeds=2).members
        8
    """

    values: int = 16
    seeds: int = 50
    epochs: int = 25
    problem: str = "blobs"
    chunk: int = 100
    repeats: int = 2  # each run's fastest of this many (alternated): a shared machine's noise only ever slows a run

    @classmethod
    def quick(cls) -> Config:
        """A smoke run: 8 members, 2 epochs, shards of 2.

        Example:
            >>> Config.quick().epochs
            2
        """
        return cls(values=4, seeds=2, epochs=2, chunk=2, repeats=1)

    @property
    def members(self) -> int:
        """Members of the study."""
        return self.values * self.seeds

    def check(self) -> Config:
        """The config, its counts checked.

        Example:
            >>> Config(epochs=0).check()
            Traceback (most recent call last):
            ...
            lrkit.errors.LabError: ray_scaling: parameter 'epochs' must be a positive integer, got 0
        """
        for name in ("values", "seeds", "epochs", "chunk", "repeats"):
            validate.integer("ray_scaling", name, getattr(self, name), LabError)
        return self

    def study(self, **kw: Any) -> tuple[float, dict[str, Any]]:
        """(wall seconds, records) of the study run with `kw` (the engine's arguments)."""
        from lrkit.lab.runner import study

        lrs = [float(v) for v in np.logspace(0, -4, self.values)]
        start = time.perf_counter()
        result = study("lr", self.problem, lrs, self.seeds, self.epochs, report=False, chunk=self.chunk, **kw)
        return time.perf_counter() - start, result.table


def run(config: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every measurement of the benchmark, as a JSON-ready report (`table` prints it); `progress` gets each step's name.

    The report's "runs" are local-2, local-1 (the local engine on 2 and 1 torch threads), ray-1x2 (1 worker of
    2 CPUs), ray-2x1 and ray-1x1 (2 and 1 workers of one CPU); each with wall_s, member_epochs_per_s, identical_to_local.

    Example:
        >>> try:  # the config is checked before any run (a full run takes minutes: `lrkit bench ray-scaling`)
        ...     run(Config(seeds=0))
        ... except LabError as e:
        ...     print(e)
        ray_scaling: parameter 'seeds' must be a positive integer, got 0
    """
    import torch

    config.check()
    load = os.getloadavg()[0]  # the 1-minute load: others' work on the cores slows the runs unevenly
    say = progress or (lambda name: None)
    threads = torch.get_num_threads()
    runs: dict[str, dict[str, Any]] = {}
    reference: dict[str, Any] = {}
    try:
        dataclasses.replace(config, values=1, seeds=1, epochs=1).study()  # the problem's data and torch's kernels, once, untimed
        for _ in range(config.repeats):
            for name, count in (("local-2", 2), ("local-1", 1)):
                say(name)
                torch.set_num_threads(count)
                wall, table = config.study()
                reference = reference or table
                runs[name] = _fastest(runs.get(name), _entry(config, wall, table, reference))
        say("ray, 2 CPUs")
        cluster2 = _on_ray(config, 2, {"ray-1x2": 2, "ray-2x1": 1}, reference)
        say("ray, 1 CPU")
        cluster1 = _on_ray(config, 1, {"ray-1x1": 1}, reference)
    finally:
        torch.set_num_threads(threads)
    runs.update(cluster2.pop("runs"))
    runs.update(cluster1.pop("runs"))
    say("commit rate")
    report: dict[str, Any] = {"config": dataclasses.asdict(config), "runs": runs, "ray_2cpu": cluster2, "ray_1cpu": cluster1,
                              "load_before_after": [load, os.getloadavg()[0]], "cores": os.cpu_count() or 1}  # fmt: skip
    report["commit_member_epochs_per_s"] = commit_rate(config)
    report["model"] = model(report)
    return report


def _entry(config: Config, wall: float, table: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    work = config.members * config.epochs
    same = all(np.array_equal(table[k], reference[k], equal_nan=table[k].dtype.kind == "f") for k in reference)
    return {"wall_s": wall, "member_epochs_per_s": work / wall, "identical_to_local": bool(same)}


def _fastest(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The faster of two runs; the records must agree with the local engine's in both."""
    if old is None:
        return new
    best = old if old["wall_s"] <= new["wall_s"] else new
    return {**best, "identical_to_local": old["identical_to_local"] and new["identical_to_local"]}


def _on_ray(config: Config, cpus: int, shard_cpus: dict[str, int], reference: dict[str, Any]) -> dict[str, Any]:
    """A local Ray of `cpus` CPUs: its start, its workers' first start, a shard's fixed cost, then one study run per entry."""
    from lrkit.engine import ray_session

    start = time.perf_counter()
    with ray_session("ray_scaling", None, LabError, num_cpus=cpus):
        init = time.perf_counter() - start
        warm, _ = dataclasses.replace(config, values=1, seeds=cpus, epochs=1).study(engine="ray", shard_size=1)
        tiny = dataclasses.replace(config, values=1, seeds=8, epochs=1)
        fixed, _ = tiny.study(engine="ray", shard_size=1, num_cpus=cpus)  # one at a time: 8 shards' fixed costs in a row
        runs: dict[str, dict[str, Any]] = {}
        for _ in range(config.repeats):
            for name, per_shard in shard_cpus.items():
                # Ray stops idle workers beyond what the last tasks used: start this run's workers first (a start is timed above)
                warm_up = dataclasses.replace(config, values=1, seeds=cpus // per_shard, epochs=1)
                warm_up.study(engine="ray", shard_size=1, num_cpus=per_shard)
                before = _overhead_cpu()
                wall, table = config.study(engine="ray", num_cpus=per_shard, shard_size=config.chunk)
                entry = {**_entry(config, wall, table, reference), "overhead_cores": (_overhead_cpu() - before) / wall}
                runs[name] = _fastest(runs.get(name), entry)
    return {"init_s": init, "first_start_s": warm, "shard_fixed_s": fixed / 8, "runs": runs}


def _overhead_cpu() -> float:
    """CPU seconds used so far by this process (the driver) and the local Ray's own processes (GCS, raylet, agents), not its workers."""
    import psutil  # a dependency of Ray

    me = psutil.Process()
    total = float(sum(me.cpu_times()[:2]))
    for child in me.children(recursive=True):
        try:
            title = " ".join(child.cmdline())
            if not (title.startswith("ray::") and "Agent" not in title):  # a worker's title is ray::IDLE or ray::<task>
                total += sum(child.cpu_times()[:2])
        except psutil.Error:  # it ended meanwhile
            continue
    return total


def commit_rate(config: Config, shards: int = 4) -> float:
    """Member-epochs per second the driver stores (`Store.add` of a shard of `chunk` members, one transaction each, on a file).

    Example:
        >>> commit_rate(Config.quick(), shards=2) > 0
        True
    """
    from lrkit.lab.store import METRICS, MemberRow, Store

    n, epochs = config.chunk, config.epochs
    metrics = {k: np.random.default_rng(0).random((n, epochs)) for k in METRICS}
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "commit.sqlite", {"bench": "ray_scaling"})
        try:
            start = time.perf_counter()
            for s in range(shards):
                rows = [MemberRow(s * n + i, "0.1", 0, s * n + i, 1.0, 0) for i in range(n)]
                store.add(rows, metrics, np.arange(1, epochs + 1) * 16)
            wall = time.perf_counter() - start
        finally:
            store.close()
    return shards * n * epochs / wall


def model(report: dict[str, Any]) -> dict[str, Any]:
    """The formula's predictions for the Ray runs, from the local one-thread rate and the measured fixed costs.

    T(W) = ceil(S / W) * (t_shard + n * E / r_W): r from `local-1`, t_shard from the tiny shards of each Ray, and
    r_W = r * min(1, (C - d) / W) where the driver and Ray's own processes take d of this machine's C cores.

    Example:
        >>> model(_sample())["ray-2x1"]  # 4 shards of 4 members x 10 epochs at 100 member-epochs/s, 0.1 s fixed each
        {'predicted_s': 1.0, 'measured_s': 1.1}
    """
    c = report["config"]
    members, n, epochs = c["values"] * c["seeds"], c["chunk"], c["epochs"]
    shards, rate = math.ceil(members / n), report["runs"]["local-1"]["member_epochs_per_s"]
    out: dict[str, Any] = {"shards": shards}
    for name, workers, cluster in (("ray-1x1", 1, "ray_1cpu"), ("ray-2x1", 2, "ray_2cpu")):
        share = min(1.0, (report["cores"] - report["runs"][name]["overhead_cores"]) / workers)  # of a core, per worker
        shard_s = report[cluster]["shard_fixed_s"] + n * epochs / (rate * share)
        predicted = math.ceil(shards / workers) * shard_s
        ceiling = report["commit_member_epochs_per_s"]
        predicted = max(predicted, members * epochs / ceiling)
        out[name] = {"predicted_s": round(predicted, 6), "measured_s": report["runs"][name]["wall_s"]}
    return out


def table(report: dict[str, Any]) -> str:
    """The report as text: every run, Ray's start-up costs, the model against the measurements, the targets met or not.

    Example:
        >>> print(table(_sample()).splitlines()[-1])
        target: 2 one-core workers >= 1.6x one: 1.82x met
    """
    c, runs = report["config"], report["runs"]
    members = c["values"] * c["seeds"]
    lines = [
        f"lr study on {c['problem']}: {c['values']} lrs x {c['seeds']} seeds = {members} members, {c['epochs']} epochs, "
        f"shards of {c['chunk']} members ({members * c['epochs']} member-epochs per run, fastest of {c['repeats']}); "
        f"machine load {report['load_before_after'][0]:.2f} before, {report['load_before_after'][1]:.2f} after",
        f"{'run':<44} {'wall s':>8} {'member-epochs/s':>16}  records",
    ]
    labels = {
        "local-2": "local engine, 2 torch threads", "local-1": "local engine, 1 torch thread",
        "ray-1x2": "Ray, 1 worker x 2 CPUs (2 threads)", "ray-2x1": "Ray, 2 workers x 1 CPU (1 thread each)",
        "ray-1x1": "Ray, 1 worker x 1 CPU (1 thread)",
    }  # fmt: skip
    for name, label in labels.items():
        r = runs[name]
        same = "identical to local" if r["identical_to_local"] else "DIFFER from local"
        lines.append(f"{label:<44} {r['wall_s']:>8.2f} {r['member_epochs_per_s']:>16.0f}  {same}")
    for key, cpus in (("ray_2cpu", 2), ("ray_1cpu", 1)):
        r = report[key]
        lines.append(f"Ray of {cpus} CPU(s): ray.init {r['init_s']:.2f} s, workers' first start {r['first_start_s']:.2f} s, "
                     f"a shard's fixed cost {1000 * r['shard_fixed_s']:.0f} ms")  # fmt: skip
    commit = 1000 * c["chunk"] * c["epochs"] / report["commit_member_epochs_per_s"]
    lines.append(f"driver commit rate: {report['commit_member_epochs_per_s']:.0f} member-epochs/s ({commit:.1f} ms per shard of "
                 f"{c['chunk']} members x {c['epochs']} epochs, Store.add on a file)")  # fmt: skip
    m = report["model"]
    for name in ("ray-1x1", "ray-2x1"):
        p = m[name]
        lines.append(f"model T = ceil({m['shards']} / W) * (t_shard + n E / r_W) for {name}: predicted {p['predicted_s']:.2f} s, "
                     f"measured {p['measured_s']:.2f} s ({p['measured_s'] / p['predicted_s'] - 1:+.0%}); driver and Ray's "
                     f"processes took {runs[name]['overhead_cores']:.2f} of {report['cores']} cores")  # fmt: skip
    cost = runs["ray-1x2"]["wall_s"] / runs["local-2"]["wall_s"]
    gain = runs["ray-2x1"]["member_epochs_per_s"] / runs["ray-1x1"]["member_epochs_per_s"]
    lines.append(f"target: Ray 1 worker on the same cores costs <= {TARGET_SAME_CORES:.2f}x local: {cost:.2f}x "
                 f"{'met' if cost <= TARGET_SAME_CORES else 'not met'}")  # fmt: skip
    met = "met" if gain >= TARGET_TWO_WORKERS else "not met"
    lines.append(f"target: 2 one-core workers >= {TARGET_TWO_WORKERS:.1f}x one: {gain:.2f}x {met}")
    return "\n".join(lines)


def _sample() -> dict[str, Any]:
    """A made-up report of the shape `run` returns (the examples' input)."""
    runs = {name: {"wall_s": wall, "member_epochs_per_s": 160 / wall, "identical_to_local": True, "overhead_cores": 0.0}
            for name, wall in (("local-2", 1.6), ("local-1", 1.6), ("ray-1x2", 1.7), ("ray-1x1", 2.0), ("ray-2x1", 1.1))}  # fmt: skip
    cluster = {"init_s": 3.0, "first_start_s": 2.0, "shard_fixed_s": 0.1}
    report = {"config": dataclasses.asdict(Config(values=4, seeds=4, epochs=10, chunk=4)), "runs": runs, "ray_2cpu": cluster,
              "ray_1cpu": cluster, "commit_member_epochs_per_s": 1e5, "load_before_after": [0.1, 0.2], "cores": 2}  # fmt: skip
    return {**report, "model": model(report)}


__all__ = ["Config", "commit_rate", "model", "run", "table"]
