"""Option types every lrkit command shares, checked when the command line is read (before any work).

`OUT_DIR` / `OUT_FILE` prove that the output can be written by creating the folder
and a probe file in it; `DEVICE` checks a torch device name (torch is imported only
when the option is given). A failure is click's usage error: exit code 2, one line.

Example:
    >>> import click
    >>> from click.testing import CliRunner
    >>> @click.command()
    ... @click.option("--out", type=OUT_DIR)
    ... def show(out): click.echo(out.is_dir())
    >>> r = CliRunner().invoke(show, ["--out", "/proc/lrkit-nope"])
    >>> r.exit_code, "cannot write" in r.output
    (2, True)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lrkit.engine import ENGINES

F = TypeVar("F", bound=Callable[..., Any])


def writable_dir(path: Path) -> str | None:
    """None when `path` is (or can be made) a folder lrkit can write into; else why not.

    Example:
        >>> import tempfile, pathlib
        >>> writable_dir(pathlib.Path(tempfile.mkdtemp()) / "new" / "dir") is None
        True
    """
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".lrkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    return None


class OutDir(click.Path):
    """A `--out` folder that must be writable: made (with its parents) and probed at parse time."""

    name = "folder"

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        why = writable_dir(path)
        if why is not None:
            self.fail(f"cannot write to folder {str(path)!r}: {why}", param, ctx)
        return path


class OutFile(click.Path):
    """A `--out` file whose folder must be writable (probed at parse time); an existing folder is refused."""

    name = "file"

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        why = "it is a folder, not a file" if path.is_dir() else writable_dir(path.parent)
        if why is not None:
            self.fail(f"cannot write file {str(path)!r}: {why}", param, ctx)
        return path


class Device(click.ParamType):  # type: ignore[type-arg]
    """A torch device name (`cpu`, `cuda`, `cuda:1`, `mps`) that exists on this machine."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        why = device_problem(str(value))
        if why is not None:
            self.fail(why, param, ctx)
        return str(value)


def device_problem(name: str) -> str | None:
    """None when torch can train on device `name` here; else why not.

    Example:
        >>> device_problem("cpu") is None, device_problem("nosuch")
        (True, "'nosuch' is not a torch device (cpu, cuda, cuda:N, mps)")
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return f"{name!r} is not a torch device (cpu, cuda, cuda:N, mps)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"{name!r}: CUDA is not available on this machine"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"{name!r}: MPS is not available on this machine"
    if device.type not in ("cpu", "cuda", "mps"):
        return f"{name!r} is not a device lrkit trains on (cpu, cuda, cuda:N, mps)"
    return None


OUT_DIR = OutDir()
OUT_FILE = OutFile()
DEVICE = Device()


def ray_options(shards: str) -> Callable[[F], F]:
    """The Ray engine's four options, the same on `lrkit study` and `lrkit search`: --engine, --address, --shard-size,
    --cpus-per-shard (`shards` says what a shard holds by default).

    Example:
        >>> from click.testing import CliRunner
        >>> @click.command()
        ... @ray_options("2 shards per worker")
        ... def show(engine, address, shard_size, cpus_per_shard): click.echo(f"{engine} {shard_size}")
        >>> CliRunner().invoke(show, ["--engine", "ray", "--shard-size", "4"]).output.strip()
        'ray 4'
    """
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True, is_eager=True,
                     help="local: this process; ray: shards of the members as Ray tasks, this process alone writing the "
                          "results (pip install 'lrkit[ray]')."),
        click.option("--address", default=None,
                     help="With --engine ray: 'auto', host:port or ray://host:port joins a cluster (default: a local Ray)."),
        click.option("--shard-size", type=click.IntRange(min=1), default=None,
                     help=f"With --engine ray: the most members per Ray task (default: {shards})."),
        click.option("--cpus-per-shard", type=click.IntRange(min=1), default=None,
                     help="With --engine ray: CPUs per task, and its torch threads (default: 1)."),
    ]  # fmt: skip

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
