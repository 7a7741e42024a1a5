"""MkDocs hook: fill ``<!-- gmmpyro --help -->`` in ``cli.md`` with the help of every ``gmmpyro`` command.

The text is produced by the command's own argparse parser at build time, so the page cannot
drift from the options the installed package accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

MARKER = "<!-- gmmpyro --help -->"
_WIDTH = "100"


def _help(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            parser.parse_args([*argv, "--help"])
    except SystemExit as done:
        if done.code not in (0, None):
            raise RuntimeError(f"gmmpyro {' '.join(argv)} --help failed with status {done.code}") from done
    return out.getvalue().rstrip()


def cli_reference() -> str:
    """Markdown: the top-level help, then one section per command with its ``--help`` text."""
    from gmmpyro.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _WIDTH  # argparse wraps to the terminal width
    try:
        parser = build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = [f"```text\n{_help(parser, [])}\n```"]
        for name in commands.choices:
            parts.append(f"### `gmmpyro {name}`\n\n```text\n{_help(parser, [name])}\n```")
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
