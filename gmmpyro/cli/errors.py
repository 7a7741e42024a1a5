"""How a ``gmmpyro`` command ends when it fails: one line on standard error and an exit status.

Status 1 for an error (unreadable input, unwritable output, bad settings, failed training)
or a status the command returns itself (``gmmpyro report`` with a failed verdict), 2 for a
command line that argparse rejects, 130 for Ctrl-C (128 + SIGINT, as shells report it).
Warnings are printed as ``gmmpyro <command>: warning: ...`` (a console script has no useful
source line to show), except ArviZ 0.x's daily notice of its coming 1.x interface, which says
nothing about the command's results (the commands build their ArviZ data in a way both
versions accept).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Sequence

from ..exceptions import TrainingError

__all__ = ["EXIT_INTERRUPTED", "CommandInterruptedError", "run_command"]

EXIT_INTERRUPTED = 130
"""The status of a command stopped by Ctrl-C."""

_ARVIZ_NOTICE = r"\s*ArviZ is undergoing a major refactor"


class CommandInterruptedError(Exception):
    """A command stopped by Ctrl-C after keeping what it could; the message says what.

    Arguments:
        message: what was done and what was kept.
        resumable: running the same command line again continues the run.
    """

    def __init__(self, message: str, *, resumable: bool) -> None:
        super().__init__(message)
        self.resumable = resumable


def run_command(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Run ``args.run(args)``; anticipated failures exit with one line on standard error.

    Arguments:
        args: the parsed command line, with the command's ``run`` function.
        argv: the command line without the program name, repeated in the hint to resume.

    Raises:
        SystemExit: status 1 with the message for unreadable or unwritable files, bad settings
            and failed training; the command's own non-zero status; status 130 when interrupted.
    """
    prefix = f"gmmpyro {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prefix}: warning: {message} ({category.__name__})", file=sys.stderr if file is None else file)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            warnings.filterwarnings("ignore", _ARVIZ_NOTICE, FutureWarning)
            status = args.run(args)
    except CommandInterruptedError as stop:
        hint = f"\nresume with: {shlex.join(['gmmpyro', *argv])}" if stop.resumable else ""
        _exit_interrupted(f"{prefix}: {stop}{hint}")
    except KeyboardInterrupt:
        _exit_interrupted(f"{prefix}: interrupted")
    except OSError as error:
        raise SystemExit(f"{prefix}: {_describe(error)}") from error
    except (ValueError, ImportError, TrainingError) as error:
        raise SystemExit(f"{prefix}: {error}") from error
    if status:
        raise SystemExit(status)


def _exit_interrupted(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED)


def _describe(error: OSError) -> str:
    """``FILE: reason`` for a file that cannot be opened, read or written."""
    if error.filename is None:
        return str(error)
    return f"{error.filename}: {error.strerror or error}"
