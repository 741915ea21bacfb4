"""Run `manage.py COMMAND ARGS` inside the test process, as the shell would see it.

A new interpreter costs seconds of Django start-up per call, which is most of what a command-line
test would spend. This does what `BaseCommand.run_from_argv` does (parse argv with the command's
own parser, print a `CommandError` to stderr and exit with its status, let argparse exit 2 on a
bad option) except closing the database connections at the end, which would break the test's
transaction. Tests about the process itself (settings read from the environment at start-up, a
worker's life) still start one.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError, handle_default_options


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def manage(name: str, *args: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    with redirect_stdout(out), redirect_stderr(err):
        command = load_command_class(get_commands()[name], name)
        command._called_from_command_line = True  # argparse errors exit 2, as in a shell
        try:
            options = command.create_parser("manage.py", name).parse_args(list(args))
            handle_default_options(options)
            cmd_options = vars(options)
            positional = cmd_options.pop("args", ())
            command.execute(*positional, **cmd_options)
        except CommandError as exc:
            command.stderr.write(f"{exc.__class__.__name__}: {exc}")
            returncode = exc.returncode
        except SystemExit as exc:
            returncode = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return Ran(returncode, out.getvalue(), err.getvalue())
