"""Reading and writing event files for the command line: ``.npz``, ``.csv`` and ``.parquet``.

A file holds named columns. ``.npz`` files hold either one 1-D array per column, or 2-D
arrays ``x`` (and ``theta``) whose column names are given by the caller. ``.csv`` files have
a header line of column names. ``.parquet`` needs pyarrow (``pip install pyarrow``).
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_columns", "select_columns", "write_columns"]

SUFFIXES = (".npz", ".csv", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    return suffix


def read_columns(path: str | Path, *, names: Mapping[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """Read a file into ``{column name: 1-D float64 array}``.

    Arguments:
        path: ``.npz``, ``.csv`` or ``.parquet`` file.
        names: for ``.npz`` files holding 2-D arrays, the column names of each array, e.g.
            ``{"x": ["x0", "x1"], "theta": ["cx"]}``.

    Raises:
        ValueError: unreadable file, ragged columns, or a 2-D array whose width does not
            match its names.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "events.csv")
        >>> write_columns(path, {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])})
        >>> read_columns(path)["b"]
        array([3., 4.])
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    suffix = _suffix(path)
    try:
        if suffix == ".csv":
            columns = _read_csv(path)
        elif suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as error:
                raise ImportError("reading .parquet files needs pyarrow: pip install pyarrow") from error
            table = pq.read_table(path)
            columns = {name: table.column(name).to_numpy().astype(np.float64) for name in table.column_names}
        else:
            columns = {}
            with np.load(path, allow_pickle=False) as archive:
                for key in archive.files:
                    array = np.asarray(archive[key], dtype=np.float64)
                    if array.ndim == 1:
                        columns[key] = array
                    elif array.ndim == 2:
                        keys = (names or {}).get(key)
                        if keys is None:
                            keys = [f"{key}{j}" for j in range(array.shape[1])]
                        if len(keys) != array.shape[1]:
                            raise ValueError(
                                f"{path}: array {key!r} has {array.shape[1]} columns but {len(keys)} names {list(keys)}"
                            )
                        columns.update({name: array[:, j] for j, name in enumerate(keys)})
                    else:
                        raise ValueError(f"{path}: array {key!r} has {array.ndim} dimensions; expected 1 or 2")
    except (EOFError, zipfile.BadZipFile) as error:  # numpy's errors for an empty or damaged archive
        raise ValueError(f"{path}: cannot read events: not a valid .npz archive ({error})") from error
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, ValueError) and str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read events: {error}") from error
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: columns have different lengths {lengths}")
    return columns


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """``{column name: (N,) array}`` of a comma-separated file with a header line.

    The header may start with ``#`` (as ``np.savetxt(..., header=...)`` writes it) and names may
    be quoted; a byte-order mark is ignored; values may be quoted.
    """
    with open(path, encoding="utf-8-sig") as handle:
        header = next(csv.reader([handle.readline().strip().removeprefix("#").strip()]), [])
        has_data = any(line.strip() for line in handle)
    header = [name.strip() for name in header]
    if not header or not all(header):
        raise ValueError(f"{path}: the first line must name every column, got {header}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: repeated column name(s) {repeated}")
    if not has_data:
        raise ValueError(f"{path}: no events below the header")
    try:
        table = np.loadtxt(
            path, delimiter=",", quotechar='"', skiprows=1, ndmin=2, dtype=np.float64, encoding="utf-8-sig"
        )
    except ValueError as error:
        raise ValueError(f"{path}: cannot read a number for every column ({error})") from error
    if table.shape[1] != len(header):
        raise ValueError(f"{path}: {table.shape[1]} values per line but {len(header)} column names")
    return {name: table[:, j] for j, name in enumerate(header)}


def select_columns(
    columns: Mapping[str, np.ndarray], wanted: Sequence[str], *, path: str | Path = "file"
) -> np.ndarray:
    """Stack the ``wanted`` columns into an ``(N, len(wanted))`` array, naming any that are missing."""
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; it has {sorted(columns)}")
    return np.stack([columns[name] for name in wanted], -1)


def write_columns(path: str | Path, columns: Mapping[str, np.ndarray]) -> None:
    """Write ``{name: 1-D array}`` as ``.npz``, ``.csv`` or ``.parquet`` (by suffix)."""
    path = Path(path)
    suffix = _suffix(path)
    names = list(columns)
    if suffix == ".npz":
        np.savez(path, **{name: np.asarray(columns[name]) for name in names})
    elif suffix == ".csv":
        table = np.stack([np.asarray(columns[name], dtype=np.float64) for name in names], -1)
        np.savetxt(path, table, delimiter=",", header=",".join(names), comments="", fmt="%.10g")
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as error:
            raise ImportError("writing .parquet files needs pyarrow: pip install pyarrow") from error
        pq.write_table(pa.table({name: np.asarray(columns[name]) for name in names}), path)
