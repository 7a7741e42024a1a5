"""The ``gmmpyro`` command: ``demo``, ``train``, ``sample``, ``infer`` and ``report``.

Run ``gmmpyro <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .demo import DemoSettings, add_demo_command, run_demo
from .errors import run_command
from .infer import add_infer_command
from .parsing import parse_observable, parse_prior
from .report import add_report_command, run_report
from .sample import add_sample_command
from .train import add_train_command

__all__ = [
    "DemoSettings",
    "add_report_command",
    "build_parser",
    "main",
    "parse_observable",
    "parse_prior",
    "run_demo",
    "run_report",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``gmmpyro`` parser with every command; each sub-parser's ``run`` default runs it.

    Example:
        >>> args = build_parser().parse_args(["sample", "m.gmm", "--theta", "cx=0.5", "-n", "10", "--out", "s.npz"])
        >>> args.command, args.theta, args.run.__name__
        ('sample', [('cx', 0.5)], 'run_sample')
    """
    parser = argparse.ArgumentParser(prog="gmmpyro", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gmmpyro {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (add_demo_command, add_train_command, add_sample_command, add_infer_command, add_report_command):
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``gmmpyro`` command; exits with status 1, 2 or 130 on failure (see ``errors``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    run_command(build_parser().parse_args(argv), argv)
