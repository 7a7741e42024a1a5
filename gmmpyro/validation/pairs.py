"""2-D marginals of every pair of observables and their pull maps (journal eq. 10, Figs. 5–7, 9).

The pulls are those of :func:`gmmpyro.validation.histograms.binned_pulls`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._results import Result, Table
from ..observables import Observable
from ._helpers import fmt
from .histograms import (
    MODEL_ONLY,
    REFERENCE_ONLY,
    _edges_per_column,
    _fold,
    _names,
    _samples,
    _status,
    binned_pulls,
)

__all__ = ["PairComparison", "PairMap", "compare_pairs"]


@dataclass(frozen=True, repr=False)
class PairMap(Result):
    """One pair of observables: 2-D fractions of both samples and the pull map (eq. 10).

    Attributes:
        names: the two observables ``(x, y)``.
        edges_x, edges_y: bin edges.
        model, reference: fraction of the weight per cell, shape ``(B_x, B_y)``.
        n_model, n_reference: raw event counts per cell.
        pull: eq. 10 per cell, ``NaN`` in empty cells.
        status: ``BOTH``, ``EMPTY``, ``MODEL_ONLY`` or ``REFERENCE_ONLY`` per cell.
    """

    names: tuple[str, str]
    edges_x: np.ndarray
    edges_y: np.ndarray
    model: np.ndarray
    reference: np.ndarray
    n_model: np.ndarray
    n_reference: np.ndarray
    pull: np.ndarray
    status: np.ndarray

    _arrays = ("edges_x", "edges_y", "model", "reference", "n_model", "n_reference", "pull", "status")

    def summary(self) -> dict:
        """Cell counts by status and the largest pull."""
        finite = np.isfinite(self.pull)
        return {
            "names": list(self.names),
            "max_abs_pull": float(np.abs(self.pull[finite]).max()) if finite.any() else math.nan,
            "model_only_cells": int((self.status == MODEL_ONLY).sum()),
            "reference_only_cells": int((self.status == REFERENCE_ONLY).sum()),
        }

    def _table(self) -> Table:
        s = self.summary()
        rows = [
            ("max |pull|", fmt(s["max_abs_pull"], 3)),
            ("model-only cells", str(s["model_only_cells"])),
            ("reference-only cells", str(s["reference_only_cells"])),
        ]
        return Table(f"PairMap {self.names[0]} × {self.names[1]}", rows)


@dataclass(frozen=True, repr=False)
class PairComparison(Result):
    """2-D marginals of all pairs of observables and their pull maps, made by :func:`compare_pairs`.

    Attributes:
        space: ``"data"`` or ``"latent"``.
        names: the observables.
        pairs: one :class:`PairMap` per pair ``(i, j)``, ``i < j``, in ``itertools.combinations`` order.
        min_count: cells with fewer events (both samples) are left out of the pull statistics.
    """

    space: str
    names: tuple[str, ...]
    pairs: tuple[PairMap, ...]
    min_count: int

    def pair(self, a: str, b: str) -> PairMap:
        """The map of observables ``a`` and ``b`` (either order)."""
        for p in self.pairs:
            if set(p.names) == {a, b}:
                return p
        raise KeyError(f"no pair ({a!r}, {b!r}); the observables are {list(self.names)}")

    def summary(self) -> dict:
        """Pull statistics over the well-filled cells of all pairs (``N(0, 1)`` for a perfect model)."""
        pulls = np.concatenate(
            [p.pull[(p.n_model + p.n_reference) >= self.min_count].ravel() for p in self.pairs] or [np.zeros(0)]
        )
        pulls = pulls[np.isfinite(pulls)]
        n = int(pulls.size)
        return {
            "space": self.space,
            "cells_tested": n,
            "pull_mean": float(pulls.mean()) if n else math.nan,
            "pull_std": float(pulls.std(ddof=1)) if n > 1 else math.nan,
            "fraction_abs_pull_above_3": float((np.abs(pulls) > 3).mean()) if n else math.nan,
            "max_abs_pull": float(np.abs(pulls).max()) if n else math.nan,
            "model_only_cells": int(sum((p.status == MODEL_ONLY).sum() for p in self.pairs)),
            "reference_only_cells": int(sum((p.status == REFERENCE_ONLY).sum() for p in self.pairs)),
        }

    def _table(self) -> Table:
        s = self.summary()
        head = f"PairComparison ({self.space} space): {len(self.pairs)} pairs of {len(self.names)} observables"
        rows = [
            ("cells tested", str(s["cells_tested"])),
            ("pull mean ± std", f"{fmt(s['pull_mean'], 3)} ± {fmt(s['pull_std'], 3)} (N(0,1) expected)"),
            ("|pull| > 3", f"{fmt(100 * s['fraction_abs_pull_above_3'], 3)} % (0.27 % expected)"),
            ("model-only cells", str(s["model_only_cells"])),
            ("reference-only cells", str(s["reference_only_cells"])),
        ]
        return Table(head, rows)


def compare_pairs(
    x_model,
    x_reference,
    *,
    observables: Sequence[Observable | str] | None = None,
    bins: int | Sequence = 20,
    ranges: Sequence[tuple[float, float] | None] | None = None,
    weights_model=None,
    weights_reference=None,
    space: str = "data",
    min_count: int = 10,
) -> PairComparison:
    """2-D histograms of every pair of observables for both samples, and their pull maps.

    Arguments are those of :func:`compare_marginals` (``bins`` per axis).

    Returns:
        A :class:`PairComparison`.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> result = compare_pairs(rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)), bins=8)
        >>> [p.names for p in result.pairs]
        [('x0', 'x1'), ('x0', 'x2'), ('x1', 'x2')]
    """
    xm, xr, wm, wr = _samples(x_model, x_reference, weights_model, weights_reference)
    d = xm.shape[1]
    if d < 2:
        raise ValueError("compare_pairs needs at least two observables")
    names, bounds = _names(observables, d)
    edges = _edges_per_column(xr, bins, ranges, bounds)
    W_m, W_r, Vt_m, Vt_r = wm.sum(), wr.sum(), (wm**2).sum(), (wr**2).sum()
    pairs = []
    for i, j in itertools.combinations(range(d), 2):
        e = (edges[i], edges[j])
        am = (_fold(xm[:, i], e[0]), _fold(xm[:, j], e[1]))
        ar = (_fold(xr[:, i], e[0]), _fold(xr[:, j], e[1]))
        s_m = np.histogram2d(*am, e, weights=wm)[0]
        v_m = np.histogram2d(*am, e, weights=wm**2)[0]
        n_m = np.histogram2d(*am, e)[0].astype(np.int64)
        s_r = np.histogram2d(*ar, e, weights=wr)[0]
        v_r = np.histogram2d(*ar, e, weights=wr**2)[0]
        n_r = np.histogram2d(*ar, e)[0].astype(np.int64)
        pairs.append(
            PairMap(
                names=(names[i], names[j]),
                edges_x=e[0],
                edges_y=e[1],
                model=s_m / W_m,
                reference=s_r / W_r,
                n_model=n_m,
                n_reference=n_r,
                pull=binned_pulls(s_m, v_m, W_m, Vt_m, s_r, v_r, W_r, Vt_r),
                status=_status(n_m, n_r),
            )
        )
    return PairComparison(space=str(space), names=tuple(names), pairs=tuple(pairs), min_count=int(min_count))
