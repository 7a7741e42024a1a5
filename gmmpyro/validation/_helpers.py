"""Helpers of the validation functions: arrays from tensors, ``log_prob`` callables, number formats.

The results themselves are :class:`gmmpyro._results.Result` dataclasses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["as_numpy", "fmt", "log_prob_function"]


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
    """``value`` to ``digits`` significant digits, ``—`` for ``None`` or ``NaN``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"
