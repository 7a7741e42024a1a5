r"""Wilks' theorem: thresholds on ``q = Δ(-2 ln L)`` and the contours they cut out of a 2-D scan.

For ``m`` parameters of interest, ``q`` at the true point is asymptotically χ² with ``m``
degrees of freedom (S. S. Wilks, Ann. Math. Statist. 9 (1938) 60), so ``{q < Δq}`` with
``Δq`` the ``cl`` quantile of that χ² is a confidence region of level ``cl``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ONE_SIGMA", "contour_lines", "delta_q"]

ONE_SIGMA = math.erf(1 / math.sqrt(2))
"""The probability of ``|z| < 1`` for a standard normal ``z``, 0.6827: what ``cl = 0.68`` means."""

_BIG = 1e30  # stands for q = inf: outside every region, yet finite for the contouring


def delta_q(cl: float, dof: int) -> float:
    """Wilks threshold on ``q = Δ(-2 ln L)``: the ``cl`` quantile of a χ² with ``dof`` degrees of freedom.

    ``cl = 0.68`` is read as the one-sigma level :data:`ONE_SIGMA` (the usual convention),
    giving the familiar 1.00 (one parameter) and 2.30 (two parameters); ``0.95`` gives 3.84
    and 5.99.

    Example:
        >>> [round(delta_q(cl, dof), 2) for dof in (1, 2) for cl in (0.68, 0.95)]
        [1.0, 3.84, 2.3, 5.99]
    """
    from scipy.stats import chi2

    if not 0 < cl < 1:
        raise ValueError(f"cl must lie in (0, 1), got {cl}")
    return float(chi2.ppf(ONE_SIGMA if cl == 0.68 else cl, dof))


def contour_lines(x: np.ndarray, y: np.ndarray, q: np.ndarray, cl: float, *, valid=None) -> list[np.ndarray]:
    """Wilks contour ``q = Δq`` (2 dof, :func:`delta_q`) of ``q`` on a 2-D grid.

    ``q`` is interpolated linearly between grid points (contourpy, as matplotlib's contour);
    points with ``valid = False`` or ``q = NaN`` are masked, points with ``q = inf``
    (zero likelihood) lie outside.

    Arguments:
        x, y: the grid axes, shapes ``(n_x,)`` and ``(n_y,)``.
        q: ``q`` on the grid, shape ``(n_x, n_y)``.
        cl: the confidence level.
        valid: optional mask of usable grid points, shape ``(n_x, n_y)``.

    Returns:
        The contour lines, each an ``(M, 2)`` array of ``(x, y)`` values.

    Example:
        >>> g = np.linspace(-3, 3, 61)
        >>> X, Y = np.meshgrid(g, g, indexing="ij")
        >>> (line,) = contour_lines(g, g, X**2 + Y**2, 0.68)  # a circle of radius √2.30
        >>> bool(np.allclose(np.hypot(line[:, 0], line[:, 1]), 1.515, atol=0.01))
        True
    """
    import contourpy

    q = np.asarray(q, dtype=float)
    if q.shape != (len(x), len(y)):
        raise ValueError(f"q must have shape ({len(x)}, {len(y)}) of the grid axes, got {q.shape}")
    mask = np.isnan(q) if valid is None else ~np.asarray(valid, dtype=bool) | np.isnan(q)
    if mask.all():
        return []
    z = np.ma.masked_where(mask, np.where(np.isposinf(q), _BIG, q))
    gen = contourpy.contour_generator(x, y, z.T, line_type=contourpy.LineType.Separate)
    return [np.asarray(line) for line in gen.lines(delta_q(cl, 2))]
