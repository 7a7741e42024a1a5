"""Reading reference events for the report: :func:`load_events` (``.npz``, ``.csv`` or ``.parquet``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..datafiles import read_columns, select_columns
from ..observables import check_events

__all__ = ["load_events"]


def load_events(path, observables, params) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read reference events: one column per observable, and either every parameter or none.

    The file is read as by ``gmmpyro train`` (``gmmpyro.datafiles.read_columns``): named
    columns in ``.npz``, ``.csv`` or ``.parquet``, or ``.npz`` arrays ``x (N, d)`` and
    ``theta (N, k)`` in the model's order.

    Arguments:
        path: the file.
        observables: the model's observables (names and bounds are checked).
        params: the model's parameter names.

    Returns:
        ``(x (N, d), theta (N, k) or None)``, float64.

    Raises:
        ValueError: unreadable file, missing columns, wrong shapes, NaN or inf, values outside
            an observable's bounds (naming it).
    """
    path = Path(path)
    names, params = [o.name for o in observables], list(params)
    columns = read_columns(path, names={"x": names, "theta": params})
    x = select_columns(columns, names, path=path)
    present = [p for p in params if p in columns]
    if present and len(present) != len(params):
        raise ValueError(f"{path}: parameter column(s) {[p for p in params if p not in columns]} missing")
    if len(x) == 0:
        raise ValueError(f"{path}: no events")
    x = torch.as_tensor(x, dtype=torch.float64)
    check_events(x, observables, what=f"{path.name}: x")
    if not present:
        return x, None
    theta = torch.as_tensor(select_columns(columns, params, path=path), dtype=torch.float64)
    if not torch.isfinite(theta).all():
        raise ValueError(f"{path}: theta contains NaN or inf")
    return x, theta
