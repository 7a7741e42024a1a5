"""Where a campaign keeps its per-toy rows: a Parquet file or a directory of Parquet files.

The campaign's settings go into every file's schema metadata; a store opened with other
settings raises a ``ValueError`` naming the file. Every write is atomic (a hidden temporary
file, then ``os.replace``), so an interrupted campaign leaves only complete rows behind and
a restart skips exactly the toys stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._optional import require

__all__ = ["ToyStore"]

_KEY = b"gmmpyro.campaign"


class ToyStore:
    """Per-toy rows of one campaign in ``path``.

    ``path`` ending in ``.parquet`` is one file, rewritten with every batch (simple to share;
    fine up to some 10⁵ toys); any other path is a directory that gets one file per batch
    (``toys-<first>-<last>.parquet``; read it with ``pyarrow.dataset`` or ``pandas.read_parquet``).

    Arguments:
        path: the file or directory.
        settings: the campaign's settings (JSON-serialisable); stored as schema metadata.
        columns: the per-toy columns, in order.
    """

    def __init__(self, path: str | os.PathLike, settings: dict[str, Any], columns: list[str]) -> None:
        self.pa = require("pyarrow")
        self.pq = require("pyarrow.parquet")
        self.path = Path(path)
        self.single_file = self.path.suffix == ".parquet"
        self.settings = json.loads(json.dumps(settings))  # as it reads back: lists for tuples
        self.columns = columns
        self._rows: list[dict[str, Any]] = []
        if self.single_file:
            if self.path.is_dir():
                raise ValueError(f"out: {self.path} is a directory; a path ending in .parquet names a file")
            if not self.path.parent.is_dir():
                raise ValueError(f"out: the directory of {self.path} does not exist")
        elif self.path.exists() and not self.path.is_dir():
            raise ValueError(f"out: {self.path} is a file; give a directory or a path ending in .parquet")

    def _files(self) -> list[Path]:
        if self.single_file:
            return [self.path] if self.path.exists() else []
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.glob("*.parquet") if not p.name.startswith("."))

    def _check(self, file: Path, schema) -> None:
        raw = (schema.metadata or {}).get(_KEY)
        if raw is None:
            raise ValueError(f"out: {file} holds no gmmpyro campaign (its Parquet metadata lacks the settings)")
        stored = json.loads(raw)
        if stored == self.settings:
            return
        keys = sorted(set(stored) | set(self.settings))
        diffs = [
            f"{k}: stored {stored.get(k, '(none)')!r}, now {self.settings.get(k, '(none)')!r}"
            for k in keys
            if stored.get(k) != self.settings.get(k)
        ]
        raise ValueError(
            f"out: {file} holds a campaign with other settings ({'; '.join(diffs)}); "
            "give another out, or the stored settings to resume it"
        )

    def read(self) -> list[dict[str, Any]]:
        """The rows stored so far (each toy once; duplicates from copied files are dropped), settings checked."""
        seen, rows = set(), []
        for file in self._files():
            try:
                with open(file, "rb") as handle:  # one handle: a reader by path may see a file replaced midway
                    table = self.pq.read_table(handle)
            except Exception as err:  # pyarrow raises its own errors for files that are not Parquet
                raise ValueError(f"out: cannot read {file} as Parquet: {err}") from err
            self._check(file, table.schema)
            missing = [c for c in self.columns if c not in table.column_names]
            if missing:
                raise ValueError(f"out: {file} lacks the column(s) {missing} of this campaign")
            for row in table.select(self.columns).to_pylist():
                if row["toy"] not in seen:
                    seen.add(row["toy"])
                    rows.append(row)
        self._rows = list(rows) if self.single_file else []
        return rows

    def _table(self, rows: list[dict[str, Any]]):
        table = self.pa.Table.from_pylist([{c: r[c] for c in self.columns} for r in rows])
        return table.replace_schema_metadata({_KEY: json.dumps(self.settings).encode()})

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Store ``rows`` (one batch) atomically."""
        if not rows:
            return
        if self.single_file:
            self._rows.extend(rows)
            target, table = self.path, self._table(self._rows)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            toys = [r["toy"] for r in rows]
            target = self.path / f"toys-{min(toys):07d}-{max(toys):07d}.parquet"
            table = self._table(rows)
        tmp = target.with_name(f".{target.name}.tmp")
        self.pq.write_table(table, tmp)
        os.replace(tmp, target)
