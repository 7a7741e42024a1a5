"""Shared machinery of the validation results: read-only arrays, plain dicts, readable reprs."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import fields

import numpy as np
import torch

__all__ = ["ValidationResult", "as_numpy", "log_prob_function", "plain"]


def plain(value):
    """``value`` as plain Python: arrays → nested lists, results → dicts, NaN/inf stay floats."""
    if isinstance(value, ValidationResult):
        return value.to_dict()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def readonly(value) -> np.ndarray:
    a = np.array(value)
    a.flags.writeable = False
    return a


def as_numpy(value, what: str, *, ndim: int | None = None) -> np.ndarray:
    """A float64 NumPy copy of a tensor or array, with a ``ValueError`` naming ``what`` on bad input."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    a = np.asarray(value, dtype=float)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimension(s), got shape {a.shape}")
    return a


def log_prob_function(density, what: str):
    """``log_prob(x, theta)`` of a density object (anything with ``.log_prob``) or a callable."""
    fn = getattr(density, "log_prob", None)
    if callable(fn):
        return fn
    if callable(density):
        return density
    raise TypeError(f"{what} must have a log_prob(x, theta) method or be callable, got {type(density).__name__}")


def fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


class ValidationResult:
    """Mixin of the frozen result dataclasses: ``to_dict``, ``summary``, ``repr`` and HTML repr.

    Subclasses list array fields in ``_arrays`` (made read-only) and implement ``summary()``
    (the headline numbers, a flat dict) and ``_table()`` (a title and ``(label, value)`` rows).
    """

    _arrays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self._arrays:
            object.__setattr__(self, name, readonly(getattr(self, name)))

    def to_dict(self) -> dict:
        """Every field as plain, JSON-serialisable Python (NaN and inf stay floats)."""
        out = {f.name: plain(getattr(self, f.name)) for f in fields(self)}
        out["summary"] = plain(self.summary())
        return out

    def summary(self) -> dict:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _table(self) -> tuple[str, list[tuple[str, str]]]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        head, rows = self._table()
        width = max((len(k) for k, _ in rows), default=0) + 2
        return "\n".join([head] + [f"  {k:<{width}}{v}" for k, v in rows])

    def _repr_html_(self) -> str:
        head, rows = self._table()
        body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><tr><th colspan='2'>{html.escape(head)}</th></tr>{body}</table>"
