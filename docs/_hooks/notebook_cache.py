"""The cache of executed tutorials: written by ``execute_notebooks.py``, read by the ``notebooks.py`` hook.

``docs/_executed/<name>.ipynb`` is ``tutorials/<name>.ipynb`` with the outputs of one run. Its
notebook metadata ``gmmpyro_docs`` records that run: ``source_sha256`` (the hash of the
source's cells), ``executed_at`` (UTC, ISO 8601), ``wall_time_s`` and ``fast`` (whether it ran
with ``GMMPYRO_FAST=1``). A copy is current while ``source_sha256`` equals the hash of the
source's cells: editing a cell makes it stale, saving the notebook with other metadata does not.

The functions take notebooks as plain JSON dicts, so the hook needs neither nbformat nor Jupyter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_DIR = Path("docs") / "_executed"  # relative to the repository root
METADATA_KEY = "gmmpyro_docs"


def cell_text(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (notebook JSON stores it as a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def cells_sha256(nb: Mapping[str, Any]) -> str:
    """SHA-256 of the cells' types and sources; outputs and metadata do not count.

    Example:
        >>> a = {"cells": [{"cell_type": "code", "source": ["x = 1\\n", "x"], "outputs": []}]}
        >>> b = {"cells": [{"cell_type": "code", "source": "x = 1\\nx", "outputs": [{"text": "1"}]}]}
        >>> cells_sha256(a) == cells_sha256(b)
        True
    """
    cells = [[cell.get("cell_type", ""), cell_text(cell)] for cell in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def run_record(executed: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``gmmpyro_docs`` metadata of an executed copy, or None when it has none."""
    return executed.get("metadata", {}).get(METADATA_KEY)


def is_current(executed: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """Whether ``executed`` is a run of the cells ``source`` has now."""
    record = run_record(executed)
    return record is not None and record.get("source_sha256") == cells_sha256(source)


def duration(seconds: float) -> str:
    """A wall time for people.

    Example:
        >>> duration(4.26), duration(192.4)
        ('4.3 s', '3 min 12 s')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at ``path`` as its JSON dict."""
    return json.loads(path.read_text(encoding="utf-8"))
