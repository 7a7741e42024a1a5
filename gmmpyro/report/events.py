"""Reading reference events for the report: :func:`load_events` (``.npz`` or ``.csv``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..observables import check_events

__all__ = ["load_events"]


def load_events(path, observables, params) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read reference events from ``.npz`` (arrays ``x`` (N, d), optional ``theta`` (N, k)) or
    ``.csv`` (a header naming every observable, and either all parameters or none).

    Arguments:
        path: the file.
        observables: the model's observables (names, order and bounds are checked).
        params: the model's parameter names.

    Returns:
        ``(x (N, d), theta (N, k) or None)``, float64.

    Raises:
        ValueError: unreadable file, missing arrays or columns, wrong shapes, values outside
            an observable's bounds (naming it).
    """
    path = Path(path)
    names, params = [o.name for o in observables], list(params)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable .npz file: {error}") from error
        if "x" not in arrays:
            raise ValueError(f"{path}: needs an array 'x' of shape (N, {len(names)}); it has {sorted(arrays)}")
        x, theta = arrays["x"], arrays.get("theta")
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"{path}: 'x' must have shape (N, {len(names)}) for observables {names}, got {x.shape}")
        if theta is not None and (theta.ndim != 2 or theta.shape != (len(x), len(params))):
            raise ValueError(
                f"{path}: 'theta' must have shape ({len(x)}, {len(params)}) for params {params}, got {theta.shape}"
            )
    elif suffix == ".csv":
        x, theta = _read_csv(path, names, params)
    else:
        raise ValueError(f"{path}: reference events must be a .npz or .csv file")
    if len(x) == 0:
        raise ValueError(f"{path}: no events")
    try:
        x = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: 'x' is not numeric: {error}") from error
    check_events(x, observables, what=f"{path.name}: x")
    if theta is not None:
        theta = torch.as_tensor(np.asarray(theta, dtype=float), dtype=torch.float64)
        if not torch.isfinite(theta).all():
            raise ValueError(f"{path}: theta contains NaN or inf")
    return x, theta


def _read_csv(path: Path, names: list[str], params: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    import csv

    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        rows = list(reader)
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(f"{path}: the header lacks observable column(s) {missing}; it has {header}")
    present = [p for p in params if p in header]
    if present and len(present) != len(params):
        raise ValueError(f"{path}: parameter column(s) {[p for p in params if p not in header]} missing")
    columns = names + (params if present else [])
    index = [header.index(c) for c in columns]
    values = np.empty((len(rows), len(columns)))
    for line, row in enumerate(rows, start=2):
        try:
            values[line - 2] = [float(row[i]) for i in index]
        except (ValueError, IndexError) as error:
            raise ValueError(f"{path}, line {line}: cannot read a number for every column: {error}") from error
    return values[:, : len(names)], (values[:, len(names) :] if present else None)
