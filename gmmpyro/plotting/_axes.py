"""Axes and colours shared by the figures: new panel grids, checked given axes, bands.

A figure function either gets its axes (``ax=``/``axes=``, checked by :func:`given_axes`) or
makes its own figure (:func:`new_panels`); it never draws on pyplot's current axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MODEL",
    "POSTERIOR",
    "PROFILE",
    "REFERENCE",
    "TRUTH",
    "band",
    "given_axes",
    "grid_shape",
    "new_panels",
    "point_cells",
]

MODEL, REFERENCE, TRUTH = "black", "C3", "C1"  # the paper: model black, simulation red; Fig. 15 truth orange
PROFILE, POSTERIOR = "C0", "C1"


def grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    """Rows and columns of a grid of ``n`` panels, ``ncols`` per row (default: about square).

    Example:
        >>> grid_shape(5, None), grid_shape(5, 2)
        ((2, 3), (3, 2))
    """
    ncols = ncols or min(n, max(1, math.ceil(math.sqrt(n))))
    return math.ceil(n / ncols), ncols


def point_cells(thetas: np.ndarray, ncols: int | None) -> tuple[int, int, list[tuple[int, int]]]:
    """Grid shape and each point's cell: a full 2-parameter grid is laid out as the parameter
    plane (columns: 1st parameter ascending, rows: 2nd parameter descending), else row-major.

    Arguments:
        thetas: parameter points, shape ``(G, k)``.
        ncols: panels per row; if given, always a plain row-major grid.

    Returns:
        ``(nrows, ncols, cells)`` with one ``(row, column)`` per point.

    Example:
        >>> point_cells(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), None)
        (2, 2, [(1, 0), (0, 0), (1, 1), (0, 1)])
    """
    if thetas.shape[1] == 2 and ncols is None:
        xs, ys = np.unique(thetas[:, 0]), np.unique(thetas[:, 1])[::-1]
        if len(xs) * len(ys) == len(thetas) and len(np.unique(thetas, axis=0)) == len(thetas):
            cells = [(int(np.nonzero(ys == t[1])[0][0]), int(np.nonzero(xs == t[0])[0][0])) for t in thetas]
            return len(ys), len(xs), cells
    nrows, ncols = grid_shape(len(thetas), ncols)
    return nrows, ncols, [(g // ncols, g % ncols) for g in range(len(thetas))]


def new_panels(nrows: int, ncols: int, cells: Sequence[tuple[int, int]] | None = None, **subplots_kw):
    """A new figure with an ``nrows × ncols`` grid of axes; the panels at ``cells`` are returned
    in that order and the others hidden (all panels, row-major, if ``cells`` is ``None``).

    Arguments:
        nrows, ncols: the grid.
        cells: ``(row, column)`` of each panel used.
        subplots_kw: passed to ``matplotlib.pyplot.subplots`` (``figsize``, ``layout``, …).

    Returns:
        ``(figure, axes)``, the axes a list.
    """
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(nrows, ncols, squeeze=False, **subplots_kw)
    if cells is None:
        return fig, list(grid.ravel())
    used = set(cells)
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in used:
                grid[r, c].set_visible(False)
    return fig, [grid[r, c] for r, c in cells]


def given_axes(axes, n: int, what: str):
    """The ``n`` axes a caller passed (any nesting, row-major), checked, and their figure.

    Raises:
        ValueError: naming the figure function ``what`` when there are not ``n`` axes.

    Returns:
        ``(figure, axes)``, the axes a list.
    """
    axes = list(np.atleast_1d(np.asarray(axes, dtype=object)).ravel())
    if len(axes) != n:
        raise ValueError(f"{what} needs {n} axes, got {len(axes)}")
    return axes[0].figure, axes


def band(ax, edges: np.ndarray, centre: np.ndarray, error: np.ndarray, colour, alpha: float = 0.3, **kw) -> None:
    """Fill ``centre ± error`` per bin as steps over ``edges`` (bins with a non-finite end left open).

    Arguments:
        ax: matplotlib axes.
        edges: bin edges, shape ``(B + 1,)``.
        centre, error: per bin, shape ``(B,)``.
        colour, alpha, kw: passed to ``fill_between``.
    """
    with np.errstate(invalid="ignore"):
        lo, hi = centre - error, centre + error
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo, hi = (np.where(ok, v, np.nan) for v in (lo, hi))
    # fill_between(step="post") takes the last bin's value once more at the right edge
    lo, hi = np.append(lo, lo[-1]), np.append(hi, hi[-1])
    ax.fill_between(edges, lo, hi, step="post", color=colour, alpha=alpha, lw=0, **kw)
