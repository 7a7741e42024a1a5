r"""Binned comparisons of model samples with reference events: the pull of eq. 10, 1-D marginals.

The pull of a bin is the journal's eq. 10 with the uncertainty evaluated under the
hypothesis that both samples come from one density:

.. math::
    \text{pull} = \frac{f_m/f_r - 1}{Δ(f_m/f_r)} = \frac{f_m - f_r}{\sqrt{\hat p\,(e_m/W_m + e_r/W_r)}},
    \qquad \hat p = \frac{n_m f_m + n_r f_r}{n_m + n_r}

with ``f = S/W`` the bin's fraction of the total weight ``W``, ``S`` its weight, ``e`` its mean
event weight and ``n = W²/Σw²`` the effective size of each sample. For unweighted events this
is the two-sample statistic of Numerical Recipes §14.3, and only relative weights matter. For
two samples of one density the pulls of well-filled bins are distributed as ``N(0, 1)`` and
``Σ pull²`` as ``χ²`` with ``n_bins - 1`` degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._results import Result, Table
from ..observables import Observable
from ._helpers import as_numpy, fmt

__all__ = [
    "EMPTY",
    "MODEL_ONLY",
    "REFERENCE_ONLY",
    "Marginal1D",
    "MarginalComparison",
    "binned_pulls",
    "compare_marginals",
    "default_edges",
]

BOTH, EMPTY, MODEL_ONLY, REFERENCE_ONLY = 0, 1, 2, 3
"""Cell status codes of :attr:`Marginal1D.status` and :attr:`PairMap.status`."""

_POPULATED = 0.01  # bins holding at least 1 % of the reference enter max_ratio_deviation


def binned_pulls(
    s_model: np.ndarray,
    v_model: np.ndarray,
    w_model: float,
    vt_model: float,
    s_ref: np.ndarray,
    v_ref: np.ndarray,
    w_ref: float,
    vt_ref: float,
) -> np.ndarray:
    """Pulls of eq. 10 per bin (module docstring); ``NaN`` where both samples are empty.

    Arguments:
        s_model, v_model: per bin, the sum of weights and of squared weights of the model sample.
        w_model, vt_model: the same over all events.
        s_ref, v_ref, w_ref, vt_ref: the same for the reference.

    Example:
        >>> binned_pulls(np.array([90.0, 0]), np.array([90.0, 0]), 100, 100,
        ...              np.array([110.0, 0]), np.array([110.0, 0]), 100, 100)
        array([-1.41421356,         nan])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        e_m = np.where(s_model > 0, v_model / s_model, vt_model / w_model)
        e_r = np.where(s_ref > 0, v_ref / s_ref, vt_ref / w_ref)
        n_m, n_r = w_model**2 / vt_model, w_ref**2 / vt_ref  # effective sizes
        p_hat = (n_m * s_model / w_model + n_r * s_ref / w_ref) / (n_m + n_r)
        var = p_hat * (e_m / w_model + e_r / w_ref)
        pull = (s_model / w_model - s_ref / w_ref) / np.sqrt(var)
    return np.where(s_model + s_ref > 0, pull, np.nan)


def _status(n_model: np.ndarray, n_ref: np.ndarray) -> np.ndarray:
    status = np.full(n_model.shape, BOTH, dtype=np.int8)
    status[(n_model == 0) & (n_ref == 0)] = EMPTY
    status[(n_model > 0) & (n_ref == 0)] = MODEL_ONLY
    status[(n_model == 0) & (n_ref > 0)] = REFERENCE_ONLY
    return status


def _chi2(pull: np.ndarray, n_model: np.ndarray, n_ref: np.ndarray, min_count: int) -> tuple[float, int, float]:
    from scipy.stats import chi2 as chi2_dist

    used = (n_model + n_ref) >= min_count
    value = float(np.sum(pull[used] ** 2))
    ndf = max(int(used.sum()) - 1, 0)
    return value, ndf, float(chi2_dist.sf(value, ndf)) if ndf > 0 else math.nan


def _names(observables, d: int) -> tuple[list[str], list]:
    """Names, and per column its bounds, or for a discrete observable one bin per value (edges)."""
    if observables is None:
        return [f"x{i}" for i in range(d)], [None] * d
    observables = list(observables)
    if len(observables) != d:
        raise ValueError(f"observables must describe the {d} columns, got {len(observables)}")
    names = [o.name if isinstance(o, Observable) else str(o) for o in observables]
    bounds = []
    for o in observables:
        if not isinstance(o, Observable):
            bounds.append(None)
        elif o.discrete:
            bounds.append(np.arange(o.bounds[0] - 0.5, o.bounds[1] + 1.0))
        else:
            bounds.append(o.bounds)
    return names, bounds


def default_edges(reference: np.ndarray, bins: int, bounds: tuple[float, float] | None) -> np.ndarray:
    """``bins + 1`` uniform edges over ``bounds``, or over the reference's 0.1 %–99.9 % quantiles.

    Example:
        >>> default_edges(np.arange(10.0), 2, (0.0, 1.0))
        array([0. , 0.5, 1. ])
    """
    if bounds is None:
        lo, hi = np.quantile(reference, [0.001, 0.999]) if reference.size else (0.0, 1.0)
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = bounds
    return np.linspace(float(lo), float(hi), int(bins) + 1)


def _edges_per_column(x_ref: np.ndarray, bins, ranges, bounds) -> list[np.ndarray]:
    d = x_ref.shape[1]
    if ranges is not None and len(ranges) != d:
        raise ValueError(f"ranges must give one (lo, hi) or None per observable ({d}), got {len(ranges)}")
    if isinstance(bins, (int, np.integer)):
        bins = [int(bins)] * d
    if len(bins) != d:
        raise ValueError(f"bins must be an int or one entry per observable ({d}), got {len(bins)}")
    edges = []
    for i, spec in enumerate(bins):
        if isinstance(spec, (int, np.integer)):
            if spec < 1:
                raise ValueError(f"bins must be positive, got {spec}")
            rng = ranges[i] if ranges is not None and ranges[i] is not None else bounds[i]
            is_edges = isinstance(rng, np.ndarray)  # a discrete observable: one bin per value
            edges.append(rng if is_edges else default_edges(x_ref[:, i], spec, rng))
        else:
            e = np.asarray(spec, dtype=float)
            if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
                raise ValueError(f"bin edges of column {i} must be a strictly increasing 1-D array")
            edges.append(e)
    return edges


def _fold(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Values outside the edges moved into the first/last bin (under/overflow folded in)."""
    return np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf))


def _weights(weights, n: int, what: str) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = as_numpy(weights, what, ndim=1)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{what} must be ({n},), finite, non-negative and not all zero")
    return w


def _samples(x_model, x_reference, weights_model, weights_reference):
    xm, xr = as_numpy(x_model, "x_model", ndim=2), as_numpy(x_reference, "x_reference", ndim=2)
    if xm.shape[1] != xr.shape[1]:
        raise ValueError(f"x_model and x_reference need the same columns, got {xm.shape[1]} and {xr.shape[1]}")
    if len(xm) == 0 or len(xr) == 0:
        raise ValueError("x_model and x_reference must hold events")
    for what, x in (("x_model", xm), ("x_reference", xr)):
        if not np.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or inf")
    return (
        xm,
        xr,
        _weights(weights_model, len(xm), "weights_model"),
        _weights(weights_reference, len(xr), "weights_reference"),
    )


@dataclass(frozen=True, repr=False)
class Marginal1D(Result):
    """One observable's binned model-vs-reference comparison (fractions of the total weight).

    Attributes:
        name: the observable.
        edges: bin edges ``(B + 1,)``; under/overflow are folded into the first/last bin.
        model, reference: fraction of the weight in each bin ``(B,)`` (each sums to 1).
        model_error, reference_error: their statistical errors ``√(Σw²)/W``.
        n_model, n_reference: raw event counts per bin.
        pull: eq. 10 per bin (module docstring), ``NaN`` in empty bins.
        status: ``BOTH``, ``EMPTY``, ``MODEL_ONLY`` or ``REFERENCE_ONLY`` per bin.
        chi2, ndf, p_value: ``Σ pull²`` over bins with at least ``min_count`` events in total,
            its degrees of freedom (bins - 1) and its χ² p-value.
        max_ratio_deviation: largest ``|f_model/f_reference - 1|`` over bins holding at least
            1 % of the reference.
    """

    name: str
    edges: np.ndarray
    model: np.ndarray
    model_error: np.ndarray
    reference: np.ndarray
    reference_error: np.ndarray
    n_model: np.ndarray
    n_reference: np.ndarray
    pull: np.ndarray
    status: np.ndarray
    chi2: float
    ndf: int
    p_value: float
    max_ratio_deviation: float

    _arrays = (
        "edges",
        "model",
        "model_error",
        "reference",
        "reference_error",
        "n_model",
        "n_reference",
        "pull",
        "status",
    )

    def summary(self) -> dict:
        """Headline numbers."""
        return {
            "chi2": self.chi2,
            "ndf": self.ndf,
            "p_value": self.p_value,
            "max_abs_pull": float(np.nanmax(np.abs(self.pull))) if np.isfinite(self.pull).any() else math.nan,
            "max_ratio_deviation": self.max_ratio_deviation,
        }

    def _table(self) -> Table:
        s = self.summary()
        head = f"Marginal1D {self.name!r}: χ²/ndf = {self.chi2:.1f}/{self.ndf}, p = {fmt(self.p_value, 3)}"
        rows = [
            ("max |pull|", fmt(s["max_abs_pull"], 3)),
            ("max |ratio - 1|", fmt(self.max_ratio_deviation, 3)),
            ("bins", f"{len(self.model)} in [{self.edges[0]:.4g}, {self.edges[-1]:.4g}]"),
        ]
        return Table(head, rows)


def _marginal(name, edges, xm, wm, xr, wr, min_count) -> Marginal1D:
    vm, vr = _fold(xm, edges), _fold(xr, edges)
    s_m, _ = np.histogram(vm, edges, weights=wm)
    v_m, _ = np.histogram(vm, edges, weights=wm**2)
    n_m, _ = np.histogram(vm, edges)
    s_r, _ = np.histogram(vr, edges, weights=wr)
    v_r, _ = np.histogram(vr, edges, weights=wr**2)
    n_r, _ = np.histogram(vr, edges)
    W_m, W_r = wm.sum(), wr.sum()
    pull = binned_pulls(s_m, v_m, W_m, (wm**2).sum(), s_r, v_r, W_r, (wr**2).sum())
    chi2, ndf, p = _chi2(pull, n_m, n_r, min_count)
    f_m, f_r = s_m / W_m, s_r / W_r
    populated = f_r >= _POPULATED
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(f_m[populated] / f_r[populated] - 1)
    return Marginal1D(
        name=name,
        edges=edges,
        model=f_m,
        model_error=np.sqrt(v_m) / W_m,
        reference=f_r,
        reference_error=np.sqrt(v_r) / W_r,
        n_model=n_m,
        n_reference=n_r,
        pull=pull,
        status=_status(n_m, n_r),
        chi2=chi2,
        ndf=ndf,
        p_value=p,
        max_ratio_deviation=float(dev.max()) if dev.size else math.nan,
    )


@dataclass(frozen=True, repr=False)
class MarginalComparison(Result):
    """1-D marginals of model samples and reference events, made by :func:`compare_marginals`.

    Index it by observable name (``result["x0"]``) for one :class:`Marginal1D`.

    Attributes:
        space: ``"data"`` or ``"latent"`` (a label for plots and reports).
        marginals: one :class:`Marginal1D` per observable.
        n_model, n_reference: number of events of each sample.
        min_count: bins with fewer events (both samples together) stay out of the χ².
    """

    space: str
    marginals: tuple[Marginal1D, ...]
    n_model: int
    n_reference: int
    min_count: int

    @property
    def names(self) -> tuple[str, ...]:
        """The observables."""
        return tuple(m.name for m in self.marginals)

    def __getitem__(self, name: str) -> Marginal1D:
        for m in self.marginals:
            if m.name == name:
                return m
        raise KeyError(f"no marginal {name!r}; the observables are {list(self.names)}")

    def summary(self) -> dict:
        """Per observable ``χ²``, ndf, p-value and largest ratio deviation; the smallest p-value."""
        per = {m.name: m.summary() for m in self.marginals}
        ps = [m.p_value for m in self.marginals if not math.isnan(m.p_value)]
        devs = [m.max_ratio_deviation for m in self.marginals if not math.isnan(m.max_ratio_deviation)]
        return {
            "space": self.space,
            "min_p_value": min(ps) if ps else math.nan,
            "max_ratio_deviation": max(devs) if devs else math.nan,
            "observables": per,
        }

    def _table(self) -> Table:
        head = f"MarginalComparison ({self.space} space): {self.n_model} model vs {self.n_reference} reference events"
        rows = [
            (
                m.name,
                f"χ²/ndf = {m.chi2:.1f}/{m.ndf}, p = {fmt(m.p_value, 3)}, "
                f"max |ratio - 1| = {fmt(m.max_ratio_deviation, 3)}",
            )
            for m in self.marginals
        ]
        return Table(head, rows)


def compare_marginals(
    x_model,
    x_reference,
    *,
    observables: Sequence[Observable | str] | None = None,
    bins: int | Sequence = 40,
    ranges: Sequence[tuple[float, float] | None] | None = None,
    weights_model=None,
    weights_reference=None,
    space: str = "data",
    min_count: int = 10,
) -> MarginalComparison:
    """Compare the 1-D marginals of two samples bin by bin: fractions, errors, pulls, χ².

    Arguments:
        x_model: events drawn from the model, shape ``(N_m, d)``.
        x_reference: reference events, shape ``(N_r, d)``.
        observables: the ``d`` :class:`~gmmpyro.Observable` (bounded ones are binned over their
            bounds) or names (default ``x0, x1, …``).
        bins: number of uniform bins, or one entry (a count or explicit edges) per observable.
        ranges: per observable ``(lo, hi)`` or ``None``; default the observable's bounds, else
            the reference's 0.1 %–99.9 % quantiles. Events outside go to the edge bins.
        weights_model, weights_reference: optional per-event weights, shapes ``(N_m,)``, ``(N_r,)``.
        space: ``"data"`` or ``"latent"``, recorded for plots.
        min_count: bins with fewer events in both samples together stay out of the χ².

    Returns:
        A :class:`MarginalComparison`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> result = compare_marginals(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2)), bins=20)
        >>> result.names, result["x0"].ndf
        (('x0', 'x1'), 19)
    """
    xm, xr, wm, wr = _samples(x_model, x_reference, weights_model, weights_reference)
    names, bounds = _names(observables, xm.shape[1])
    edges = _edges_per_column(xr, bins, ranges, bounds)
    marginals = tuple(
        _marginal(n, e, xm[:, i], wm, xr[:, i], wr, min_count)
        for i, (n, e) in enumerate(zip(names, edges, strict=True))
    )
    return MarginalComparison(
        space=str(space), marginals=marginals, n_model=len(xm), n_reference=len(xr), min_count=int(min_count)
    )
