"""The settings of the minimiser behind :func:`~gmmpyro.inference.fit.fit` and :func:`~gmmpyro.inference.scan.scan`."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """How fits and scans minimise ``-ln L``: starting points, tolerance, iterations.

    A global fit runs ``n_starts`` batched damped-Newton minimisations (the given start, else
    the centre of the search box, then uniform draws in it) and keeps the lowest converged
    minimum; a scan adds one conditional fit per grid point and retries failed points from
    their converged neighbours.

    Arguments:
        n_starts: starting points of a global fit, run as one batch.
        seed: seed of the random starting points.
        tol: convergence threshold on ``edm`` (in ``-ln L``) of every fit.
        max_iter: most Newton iterations of a global fit.
        profile_max_iter: most Newton iterations of each conditional fit of a scan.
        refine: most rounds of neighbour warm starts of a scan (``0``: none).

    Example:
        >>> FitConfig(n_starts=1).max_iter
        100
    """

    n_starts: int = 8
    seed: int = 0
    tol: float = 1e-6
    max_iter: int = 100
    profile_max_iter: int = 50
    refine: int = 3

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the bad setting."""
        for name, low in (("n_starts", 1), ("max_iter", 1), ("profile_max_iter", 1), ("refine", 0), ("seed", None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if low is not None and value < low:
                raise ValueError(f"{name} must be at least {low}, got {value!r}")
        tol = self.tol
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
