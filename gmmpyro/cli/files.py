"""Input and output files of the ``gmmpyro`` commands, checked before any work starts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_output_file", "check_output_folder"]


def check_output_file(path: str | Path, *, suffixes: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` unless ``path`` can be written: its folder exists and is writable.

    Arguments:
        path: the file a command will write at its end.
        suffixes: the file types the command can write, e.g. ``(".npz", ".csv")``; any if empty.

    Example:
        >>> check_output_file("missing-folder/model.gmm")
        Traceback (most recent call last):
        ...
        ValueError: cannot write missing-folder/model.gmm: the folder missing-folder does not exist
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"cannot write {path}: unsupported file type {path.suffix!r}; use {', '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"cannot write {path}: the folder {folder} {what}")
    _check_writable(folder, path)


def check_output_folder(path: str | Path) -> None:
    """Raise ``ValueError`` unless the folder ``path`` exists or can be created, and is writable.

    Example:
        >>> check_output_folder("a/new/folder")  # created later, with its parents
    """
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot write into {path}: {existing} is not a folder")
    _check_writable(existing, path)


def _check_writable(folder: Path, target: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {target}: no permission to write in {folder}")
