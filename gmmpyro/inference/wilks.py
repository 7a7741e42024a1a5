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


def _cells(axis: np.ndarray, refine: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An axis with every cell cut into ``refine`` parts: ``(fine, cell, t)``, ``t`` the position in the cell."""
    steps = np.linspace(0.0, 1.0, refine + 1)[:-1]
    fine = np.append((axis[:-1, None] + np.diff(axis)[:, None] * steps).ravel(), axis[-1])
    cell = np.minimum(np.arange(fine.size) // refine, axis.size - 2)
    t = np.append(np.tile(steps, axis.size - 1), 1.0)
    return fine, cell, t


def _lagrange(axis: np.ndarray, fine: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First node and weights of the cubic through the 4 nodes around each fine point's cell."""
    first = np.clip(cell - 1, 0, axis.size - 4)  # one-sided at the edges
    nodes = axis[first[:, None] + np.arange(4)]  # F 4
    w = np.ones_like(nodes)
    for a in range(4):
        for b in range(4):
            if a != b:
                w[:, a] *= (fine - nodes[:, b]) / (nodes[:, a] - nodes[:, b])
    return first, w


def _along(z: np.ndarray, first: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """``sum_a w[f, a] z[first[f] + a]`` along ``axis`` of ``z``; a NaN with non-zero weight gives NaN."""
    z = np.moveaxis(z, axis, 0)
    out = sum(np.where(w[:, a, None] != 0, w[:, a, None] * z[first + a], 0.0) for a in range(w.shape[1]))
    return np.moveaxis(out, 0, axis)


def _stencil_extreme(z: np.ndarray, first_x: np.ndarray, first_y: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (``np.fmin``/``np.fmax``) of ``z`` over the 4×4 stencil of every fine point."""
    nx, ny = z.shape[0] - 3, z.shape[1] - 3
    zx = reduce.reduce(np.stack([z[a : a + nx] for a in range(4)]), axis=0)  # nx n_y
    zxy = reduce.reduce(np.stack([zx[:, b : b + ny] for b in range(4)]), axis=0)  # nx ny: per first node
    return zxy[np.ix_(first_x, first_y)]  # Fx Fy


def _smooth_grid(x: np.ndarray, y: np.ndarray, q: np.ndarray, refine: int, *, mask=None):
    """``q`` on a grid ``refine`` times finer: bicubic where it can, bilinear elsewhere.

    Inside a cell whose 4×4 neighbourhood of grid points (one-sided at the edges) is usable and
    finite, ``q`` is the tensor-product cubic through those 16 points (exact for quadratics, so
    for a Gaussian likelihood), kept within their range so that steep sides cannot dip below
    their lowest point. Other cells are interpolated bilinearly with ``q = inf`` read as
    :data:`_BIG`, and a fine point whose interpolation weighs a masked grid point is masked:
    the smooth field never reaches into masked or zero-likelihood points.

    Arguments:
        x, y: the grid axes, shapes ``(n_x,)`` and ``(n_y,)``, strictly increasing.
        q: shape ``(n_x, n_y)``.
        refine: parts per grid cell along each axis.
        mask: unusable grid points, shape ``(n_x, n_y)`` (with those where ``q`` is NaN).

    Returns:
        ``(fine_x, fine_y, fine_q)``, shapes ``(F_x,)``, ``(F_y,)`` and ``(F_x, F_y)``, with
        ``F = refine (n - 1) + 1``; ``fine_q`` a masked array.

    Example:
        >>> g = np.linspace(-2, 2, 5)
        >>> fx, fy, fq = _smooth_grid(g, g, g[:, None] ** 2 + g**2, 4)
        >>> bool(np.allclose(fq, fx[:, None] ** 2 + fy**2))
        True
    """
    x, y, q = (np.asarray(v, dtype=float) for v in (x, y, q))
    bad = np.isnan(q) if mask is None else np.asarray(mask, dtype=bool) | np.isnan(q)
    (fx, cx, tx), (fy, cy, ty) = _cells(x, refine), _cells(y, refine)
    # bilinear, NaN wherever a masked point has weight
    wx, wy = np.stack([1 - tx, tx], -1), np.stack([1 - ty, ty], -1)  # F 2
    z = np.where(bad, np.nan, np.where(np.isposinf(q), _BIG, q))
    fine = _along(_along(z, cx, wx, 0), cy, wy, 1)  # Fx Fy
    if len(x) >= 4 and len(y) >= 4:
        z = np.where(bad | ~np.isfinite(q), np.nan, q)
        (px, lx), (py, ly) = _lagrange(x, fx, cx), _lagrange(y, fy, cy)
        cubic = _along(_along(z, px, lx, 0), py, ly, 1)  # Fx Fy, NaN unless the 4×4 stencil is usable
        lo = _stencil_extreme(z, px, py, np.fmin)
        hi = _stencil_extreme(z, px, py, np.fmax)
        smooth = ~np.isnan(cubic)
        fine[smooth] = np.clip(cubic, lo, hi)[smooth]
    return fx, fy, np.ma.masked_invalid(fine)


def contour_lines(
    x: np.ndarray, y: np.ndarray, q: np.ndarray, cl: float, *, valid=None, refine: int = 8
) -> list[np.ndarray]:
    """Wilks contour ``q = Δq`` (2 dof, :func:`delta_q`) of ``q`` on a 2-D grid.

    ``q`` is interpolated onto a grid ``refine`` times finer and contoured there with linear
    interpolation (contourpy, as matplotlib's contour). The finer grid is bicubic in every cell
    whose 4×4 neighbourhood of grid points is usable and finite (the cubic through those 16
    points: exact for a quadratic ``q``, kept within their range), bilinear elsewhere, so a
    coarse scan gives a smooth contour close to that of a fine one. ``refine=1`` contours the
    grid itself, linearly. Points with ``valid = False`` or ``q = NaN`` are masked, points with
    ``q = inf`` (zero likelihood) lie outside; the contour never passes through either.

    Arguments:
        x, y: the grid axes, shapes ``(n_x,)`` and ``(n_y,)``.
        q: ``q`` on the grid, shape ``(n_x, n_y)``.
        cl: the confidence level.
        valid: optional mask of usable grid points, shape ``(n_x, n_y)``.
        refine: parts per grid cell of the interpolated grid; 1 for linear interpolation.

    Returns:
        The contour lines, each an ``(M, 2)`` array of ``(x, y)`` values.

    Example:
        >>> g = np.linspace(-3, 3, 13)
        >>> X, Y = np.meshgrid(g, g, indexing="ij")
        >>> (line,) = contour_lines(g, g, X**2 + Y**2, 0.68)  # a circle of radius √2.30
        >>> bool(np.allclose(np.hypot(line[:, 0], line[:, 1]), 1.5152, atol=0.002))
        True
    """
    import contourpy

    q = np.asarray(q, dtype=float)
    if q.shape != (len(x), len(y)):
        raise ValueError(f"q must have shape ({len(x)}, {len(y)}) of the grid axes, got {q.shape}")
    if int(refine) != refine or refine < 1:
        raise ValueError(f"refine must be a positive integer, got {refine!r}")
    mask = np.isnan(q) if valid is None else ~np.asarray(valid, dtype=bool) | np.isnan(q)
    if mask.all():
        return []
    if refine == 1:
        z = np.ma.masked_where(mask, np.where(np.isposinf(q), _BIG, q))
    else:
        x, y, z = _smooth_grid(x, y, q, int(refine), mask=mask)
    gen = contourpy.contour_generator(x, y, z.T, line_type=contourpy.LineType.Separate)
    return [np.asarray(line) for line in gen.lines(delta_q(cl, 2))]
