"""The `lrkit` command line: a thin layer over the Python API.

Each sub-command lives in its own module, imported only when used, so
`lrkit --help` stays fast. A user mistake (any `LrkitError`) prints one line
and exits with status 2; no traceback. So does a `SystemExit` raised by user code
(a problem factory, a model) inside a command: exiting is not success. Commands
end early with click's `ctx.exit(code)` / `click.exceptions.Exit`, never `SystemExit`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from lrkit.errors import LrkitError

# command name -> "module:attribute"
COMMANDS = {
    "schedule": "lrkit.cli.schedule:schedule",
    "find": "lrkit.cli.find:find",
    "bench": "lrkit.cli.bench:bench",
    "study": "lrkit.cli.study:study",
    "landscape": "lrkit.cli.landscape:landscape",
    "search": "lrkit.cli.search:search",
}


class LrkitGroup(click.Group):
    """A click group that loads commands lazily and turns lrkit errors into one line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        found = [name for name, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]
        return sorted(set(found) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None or importlib.util.find_spec(target.split(":")[0]) is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LrkitError as e:
            click.echo(f"lrkit: error: {e}", err=True)
        except SystemExit as e:
            # lrkit's commands end with click's Exit; a SystemExit comes from user code (a factory, a model): not a success
            command = ctx.invoked_subcommand
            click.echo(f"lrkit: error: user code called sys.exit({e.code!r}) during 'lrkit {command}'; nothing more was done", err=True)
        ctx.exit(2)


@click.group(cls=LrkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lrkit")
def cli() -> None:
    """lrkit: schedule, find, control, study and see the learning rate."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lrkit` script.

    Example:
        >>> from click.testing import CliRunner
        >>> CliRunner().invoke(cli, ["--help"]).exit_code
        0
    """
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="lrkit")
