"""Where a population trains: in this process (`engine="local"`), or as shards on a Ray cluster (`engine="ray"`).

The Ray engine splits a population into shards, runs each shard as one Ray task (the same batched trainer,
so a shard keeps lrkit's speed) and hands each finished shard back to the driver, which alone writes
results. A worker process that dies mid-shard is a system failure: Ray runs the shard again (`RETRIES`).
An exception raised by the shard's own code (a bug in a user's factory) is not retried: it stops the run
with one `LrkitError` line naming the shard's members and the error.

Ray is imported only here and only when asked for, so `import lrkit` and the local engine need no Ray.

Example:
    >>> from lrkit.errors import LabError
    >>> read_engine("study", "local", None, LabError)
    'local'
    >>> try:
    ...     read_engine("study", "local", "auto", LabError)
    ... except LabError as e:
    ...     print(str(e)[:58])
    study: parameter 'address' joins a Ray cluster, so it need
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from lrkit import validate
from lrkit.errors import LrkitValueError

Error = type[LrkitValueError]
ENGINES = ("local", "ray")
RETRIES = 3  # runs of a shard after its worker died (kill -9, out of memory, a lost node)
INSTALL = "pip install 'lrkit[ray]'"
POLL_S = 0.25  # how often the driver reads the cluster's progress while it waits for shards


def read_engine(func: str, engine: Any, address: Any, error: Error) -> str:
    """`engine` checked ("local" or "ray"); `address` (None, "auto", "host:port" or "ray://host:port") only with Ray.

    Example:
        >>> from lrkit.errors import LabError
        >>> read_engine("study", "ray", "ray://10.0.0.1:10001", LabError)
        'ray'
    """
    chosen = validate.choice(func, "engine", engine, error, ENGINES)
    if address is not None:
        if chosen != "ray":
            validate.fail(func, "address", "joins a Ray cluster, so it needs engine='ray'", address, error)
        if not isinstance(address, str) or not address.strip():
            validate.fail(func, "address", "must be None (a local Ray), 'auto', 'host:port' or 'ray://host:port'", address, error)
    return chosen


@dataclasses.dataclass(frozen=True)
class Resources:
    """How a population is cut and placed on Ray: members per shard, CPUs and GPUs per shard (None: chosen from the cluster).

    Example:
        >>> from lrkit.errors import LabError
        >>> read_resources("train", None, 2, None, "ray", LabError)
        Resources(shard_size=None, num_cpus=2, num_gpus=None)
    """

    shard_size: int | None
    num_cpus: int | None
    num_gpus: float | None


def read_resources(func: str, shard_size: Any, num_cpus: Any, num_gpus: Any, engine: str, error: Error) -> Resources:
    """`shard_size`, `num_cpus` (whole CPUs: the shard's torch threads) and `num_gpus` checked; each only with `engine="ray"`.

    Example:
        >>> from lrkit.errors import LabError
        >>> try:
        ...     read_resources("study", 10, None, None, "local", LabError)
        ... except LabError as e:
        ...     print(str(e)[:63])
        study: parameter 'shard_size' cuts a population into Ray tasks,
    """
    given = {"shard_size": shard_size, "num_cpus": num_cpus, "num_gpus": num_gpus}
    for name, value in given.items():
        if value is not None and engine != "ray":
            validate.fail(func, name, "cuts a population into Ray tasks, so it needs engine='ray'", value, error)
    return Resources(
        None if shard_size is None else validate.integer(func, "shard_size", shard_size, error),
        None if num_cpus is None else validate.integer(func, "num_cpus", num_cpus, error),
        None if num_gpus is None else validate.non_negative(func, "num_gpus", num_gpus, error),
    )


def require_ray(func: str, error: Error) -> Any:
    """The `ray` module, or an `error` that says how to install it.

    Example:
        >>> from lrkit.errors import LabError
        >>> require_ray("study", LabError).__name__
        'ray'
    """
    try:
        import ray
    except ImportError:
        validate.fail(func, "engine", f"'ray' needs Ray, which is not installed: {INSTALL}", "ray", error)
    return ray


@contextlib.contextmanager
def ray_session(func: str, address: str | None, error: Error, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected: a Ray already initialised in this process is used as it is (and left running); otherwise
    `address=None` starts a local Ray sized to this machine (or to `num_cpus`) and `"auto"` / `"ray://..."` joins
    a cluster; what this function started it shuts down.

    Example:
        >>> from lrkit.errors import LabError
        >>> with ray_session("study", None, LabError, num_cpus=1) as ray:
        ...     ray.cluster_resources()["CPU"]
        1.0
    """
    ray = require_ray(func, error)
    if ray.is_initialized():  # the caller's own Ray: an address that may name another cluster is not silently dropped
        if address is not None:
            validate.fail(func, "address", "must be None while Ray is already initialised in this process (ray.shutdown() first)",
                          address, error)  # fmt: skip
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:  # "local": a new instance, even where `ray start` left one running (ray.init would join it)
        options["num_cpus"] = num_cpus if num_cpus is not None else os.cpu_count() or 1
    try:
        ray.init(address="local" if address is None else address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        why = " ".join(str(e).split())[:300]
        validate.fail(func, "address", f"must reach a Ray cluster ({type(e).__name__}: {why})", address, error)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclasses.dataclass(frozen=True)
class Shard:
    """One Ray task's work: `members` (the population's indices it trains, named in errors) and the task's arguments.

    Example:
        >>> Shard((0, 1), ("blobs",)).describe()
        'members 0-1'
    """

    members: tuple[int, ...]
    args: tuple[Any, ...]

    def describe(self) -> str:
        """The members, as a short range list ("members 0-3, 8")."""
        runs: list[list[int]] = []
        for m in sorted(self.members):
            if runs and m == runs[-1][-1] + 1:
                runs[-1].append(m)
            else:
                runs.append([m])
        text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)
        return f"member{'s' if len(self.members) > 1 else ''} {text}"


def shard_sizes(members: int, workers: int, largest: int) -> int:
    """The default shard size: members spread evenly over 2 shards per worker (so a slow or lost shard is a small
    loss), no shard larger than `largest`.

    Example:
        >>> shard_sizes(800, 2, 100), shard_sizes(10, 4, 100)
        (100, 2)
    """
    return max(1, min(largest, -(-members // max(1, 2 * workers))))


class _Counter:
    """A Ray actor summing the units of work the shards report (member-epochs), read by the driver for its progress bar."""

    def __init__(self) -> None:
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n

    def read(self) -> int:
        return self.done


def ticker(counter: Any) -> Callable[[int], None]:
    """Inside a shard: a function reporting `n` units done to the driver's counter (nothing when there is none).

    Example:
        >>> ticker(None)(3)
    """
    def tick(n: int) -> None:
        if counter is not None:
            counter.add.remote(n)  # fire and forget: the driver reads the sum when it polls

    return tick


def run_shards(
    func: str,
    error: Error,
    task: Callable[..., Any],
    shards: Sequence[Shard],
    on_result: Callable[[Shard, Any], None],
    *,
    num_cpus: float = 1,
    num_gpus: float = 0,
    progress: Callable[[int], None] | None = None,
    counter: Any = None,
) -> None:
    """Run `task(*shard.args, counter)` as one Ray task per shard; call `on_result(shard, result)` in this process,
    in the order shards finish. `counter` is the handle `ticker` reads (None without `progress`); `progress` is
    called with the units reported during this call. A caller running several rounds passes one `counter`
    (`progress_counter`) to all of them (starting an actor costs seconds). Needs a connected Ray (`ray_session`).

    Example:
        >>> from lrkit.errors import LabError
        >>> got = []
        >>> with ray_session("study", None, LabError, num_cpus=1):
        ...     run_shards("study", LabError, lambda x, counter: 2 * x, [Shard((0,), (1,)), Shard((1,), (5,))],
        ...                lambda s, r: got.append(r))
        >>> sorted(got)
        [2, 10]
    """
    ray = require_ray(func, error)
    with contextlib.ExitStack() as stack:
        if progress is not None and counter is None:
            counter = stack.enter_context(progress_counter())
        start = _read(ray, counter) if progress is not None else 0
        remote = ray.remote(task).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=RETRIES, retry_exceptions=False)
        pending = {remote.remote(*s.args, counter if progress is not None else None): s for s in shards}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S if progress is not None else None)
                for ref in ready:
                    shard = pending.pop(ref)
                    on_result(shard, _get(ray, ref, shard, func, error))
                if progress is not None:
                    progress(max(0, _read(ray, counter) - start))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


@contextlib.contextmanager
def progress_counter() -> Iterator[Any]:
    """A counter actor for `run_shards`' progress, shared by several rounds of shards, killed at the end.

    Example:
        >>> from lrkit.errors import LabError
        >>> with ray_session("study", None, LabError, num_cpus=1), progress_counter() as counter:
        ...     ticker(counter)(3)
        ...     _read(require_ray("study", LabError), counter)
        3
    """
    import ray

    counter: Any = ray.remote(_Counter).options(num_cpus=0).remote()
    try:
        yield counter
    finally:
        ray.kill(counter)


def _read(ray: Any, counter: Any) -> int:
    """The units the shards reported; a counter lost with its node costs the progress bar, never the run."""
    try:
        return int(ray.get(counter.read.remote(), timeout=30))
    except ray.exceptions.RayError:
        return 0


def _get(ray: Any, ref: Any, shard: Shard, func: str, error: Error) -> Any:
    """The shard's result; its failure as one `error` line: the members, and the exception the user's code raised."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        why = f"{type(cause).__name__}: {' '.join(str(cause).split())[:400]}"
    except ray.exceptions.RayError as e:  # the worker died on every retry, or the node was lost
        why = f"{type(e).__name__} after {RETRIES} retries: {' '.join(str(e).split())[:300]}"
    raise error(f"{func}: the shard of {shard.describe()} failed on Ray ({why})")


__all__ = [
    "ENGINES", "RETRIES", "Resources", "Shard", "progress_counter", "ray_session", "read_engine", "read_resources", "require_ray",
    "run_shards", "shard_sizes", "ticker",
]  # fmt: skip
