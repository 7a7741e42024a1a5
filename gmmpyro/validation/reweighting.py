"""Parameter dependence of the 1-D marginals by reweighting one sample (journal Figs. 10–13).

Events drawn once at ``θ_ref`` and weighted by ``w = p(x|θ)/p(x|θ_ref)`` follow ``p(x|θ)``; the
ratio of the weighted to the unweighted histogram is ``p(x|θ)/p(x|θ_ref)`` per bin, with
statistical fluctuations that largely cancel between numerator and denominator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._results import Result, Table
from ..observables import Observable
from ._helpers import as_numpy, fmt, log_prob_function
from .histograms import _fold, default_edges

__all__ = ["ParameterDependence", "reweighted_dependence", "simulated_dependence"]


@dataclass(frozen=True, repr=False)
class ParameterDependence(Result):
    """Per observable and parameter point, the ratio ``p(x|θ)/p(x|θ_ref)`` of binned marginals.

    Made by :func:`reweighted_dependence` (one sample at ``θ_ref``, reweighted) or
    :func:`simulated_dependence` (independent samples at each point).

    Attributes:
        source: what produced it, e.g. ``"model"``, ``"truth"``, ``"simulated"`` (a plot label).
        names: the ``d`` observables; ``params`` the ``k`` parameters.
        theta_ref: the reference point ``(k,)``; ``thetas`` the points compared to it ``(G, k)``.
        edges: bin edges per observable, shape ``(d, B + 1)``.
        ratio: the ratio per point, observable and bin, shape ``(G, d, B)`` (``NaN`` in empty bins
            or at points without events).
        error: its statistical error, same shape.
        n_events: events at the reference point.
        ess: per point, the effective number of events: Kish's ``(Σw)²/Σw²`` when reweighted
            (small values flag points the reference sample hardly covers), the event count when
            simulated.
    """

    source: str
    names: tuple[str, ...]
    params: tuple[str, ...]
    theta_ref: np.ndarray
    thetas: np.ndarray
    edges: np.ndarray
    ratio: np.ndarray
    error: np.ndarray
    n_events: int
    ess: np.ndarray

    _arrays = ("theta_ref", "thetas", "edges", "ratio", "error", "ess")

    def point_label(self, g: int) -> str:
        """``"cx=0.5, cy=-0.5"`` for point ``g``."""
        return ", ".join(f"{p}={v:.3g}" for p, v in zip(self.params, self.thetas[g], strict=True))

    def summary(self) -> dict:
        """Smallest effective sample size and largest ratio deviation from 1 per point."""
        with np.errstate(invalid="ignore"):
            dev = np.nanmax(np.abs(self.ratio - 1), axis=(1, 2)) if np.isfinite(self.ratio).any() else None
        return {
            "source": self.source,
            "n_points": len(self.thetas),
            "min_ess": float(np.min(self.ess)) if len(self.ess) else math.nan,
            "max_abs_ratio_minus_1": None if dev is None else [float(v) for v in dev],
        }

    def _table(self) -> Table:
        ref = ", ".join(f"{p}={v:.3g}" for p, v in zip(self.params, self.theta_ref, strict=True))
        head = (
            f"ParameterDependence ({self.source}): {len(self.thetas)} points vs θ_ref = ({ref}), "
            f"{self.n_events} events at θ_ref, observables {list(self.names)}"
        )
        rows = [(self.point_label(g), f"effective events {fmt(float(e), 4)}") for g, e in enumerate(self.ess)]
        return Table(head, rows)


def _axis_info(density, names, d: int) -> tuple[list[str], list]:
    observables = getattr(density, "observables", None) if names is None else None
    if observables is not None:
        obs = list(observables)
        return [o.name for o in obs], [o.bounds if isinstance(o, Observable) and not o.discrete else None for o in obs]
    names = [f"x{i}" for i in range(d)] if names is None else [str(n) for n in names]
    return names, [None] * d


def _edges(x: np.ndarray, edges, bins: int, bounds) -> np.ndarray:
    if edges is not None:
        e = np.asarray(edges, dtype=float)
        if e.ndim != 2 or e.shape[0] != x.shape[1] or e.shape[1] < 2 or np.any(np.diff(e, axis=1) <= 0):
            raise ValueError(f"edges must have shape ({x.shape[1]}, B + 1), strictly increasing, got {e.shape}")
        return e
    return np.stack([default_edges(x[:, i], bins, bounds[i]) for i in range(x.shape[1])])


def _theta(value, what: str, k: int | None = None) -> np.ndarray:
    a = as_numpy(value, what)
    if k is not None and a.shape[-1:] != (k,):
        raise ValueError(f"{what} must end in the {k} parameters, got shape {a.shape}")
    return a


def reweighted_dependence(
    density,
    theta_ref,
    thetas,
    *,
    n: int = 100_000,
    bins: int = 20,
    edges=None,
    names: Sequence[str] | None = None,
    source: str = "model",
    seed: int = 0,
    chunk_size: int = 50_000,
) -> ParameterDependence:
    """``p(x|θ)/p(x|θ_ref)`` per 1-D marginal from one sample at ``θ_ref``, reweighted.

    Draws ``n`` events at ``θ_ref`` from ``density`` and gives each the weight
    ``w = p(x|θ)/p(x|θ_ref)``; per bin the ratio is ``(Σ_bin w / Σ w) / (n_bin / n)`` with error
    ``√Σ_bin (w - w̄_bin)² / n_bin`` (relative to the mean weight): the fluctuation of the
    reference sample cancels. It assumes ``p(x|θ_ref)`` covers the support of ``p(x|θ)``;
    :attr:`ParameterDependence.ess` shows where it does not.

    Arguments:
        density: a :class:`~gmmpyro.protocols.ConditionalDensity` (a model or the truth).
        theta_ref: the reference point, shape ``(k,)``.
        thetas: the points to compare, shape ``(G, k)``.
        n: events drawn at ``θ_ref``.
        bins: uniform bins per observable (over its bounds or the sample's 0.1 %–99.9 % range).
        edges: explicit edges ``(d, B + 1)`` instead, e.g. another result's, to overlay them.
        names: observable names (default ``density.observables``).
        source: label of the result.
        seed: seed of the sample.
        chunk_size: events per ``log_prob`` call.

    Returns:
        A :class:`ParameterDependence`.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> r = reweighted_dependence(ToyModel(), [0.0, 0.0], [[0.0, 0.0], [0.5, 0.5]], n=2000, bins=10)
        >>> r.ratio.shape, bool(np.allclose(r.ratio[0], 1.0))
        ((2, 4, 10), True)
    """
    log_prob = log_prob_function(density, "density")
    k = len(getattr(density, "params", ())) or None
    theta_ref = _theta(theta_ref, "theta_ref", k).reshape(-1)
    thetas = _theta(thetas, "thetas", len(theta_ref))
    thetas = thetas.reshape(-1, len(theta_ref))
    dtype = getattr(density, "dtype", torch.float64)
    with torch.no_grad():
        x = density.sample(int(n), torch.as_tensor(theta_ref, dtype=dtype), seed=seed)  # n d
        x = x.reshape(int(n), -1)

        def lp(theta: np.ndarray) -> torch.Tensor:
            th = torch.as_tensor(theta, dtype=dtype)
            parts = [log_prob(x[s : s + chunk_size], th).double().cpu() for s in range(0, x.shape[0], chunk_size)]
            return torch.cat(parts)

        lp_ref = lp(theta_ref)
        log_w = torch.stack([lp(t) - lp_ref for t in thetas]).numpy()  # G n
    x_np = x.double().cpu().numpy()
    names, bounds = _axis_info(density, names, x_np.shape[1])
    e = _edges(x_np, edges, bins, bounds)
    with np.errstate(over="ignore"):
        w = np.exp(log_w)  # G n
    if not np.isfinite(w).all():
        raise ValueError("non-finite weights p(x|θ)/p(x|θ_ref): is a point of thetas outside the density's support?")
    G, d, B = len(thetas), x_np.shape[1], e.shape[1] - 1
    ratio = np.full((G, d, B), np.nan)
    error = np.full((G, d, B), np.nan)
    w_mean = w.mean(1)  # G
    for i in range(d):
        index = np.clip(np.searchsorted(e[i], _fold(x_np[:, i], e[i]), side="right") - 1, 0, B - 1)  # n
        counts = np.bincount(index, minlength=B).astype(float)  # B
        for g in range(G):
            s = np.bincount(index, weights=w[g], minlength=B)
            s2 = np.bincount(index, weights=w[g] ** 2, minlength=B)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean_bin = s / counts
                ratio[g, i] = mean_bin / w_mean[g]
                spread = np.maximum(s2 - counts * mean_bin**2, 0.0)  # Σ_bin (w - w̄_bin)²
                error[g, i] = np.sqrt(spread) / counts / w_mean[g]
            ratio[g, i, counts == 0] = np.nan
            error[g, i, counts == 0] = np.nan
    ess = w.sum(1) ** 2 / (w**2).sum(1)
    return ParameterDependence(
        source=str(source),
        names=tuple(names),
        params=tuple(getattr(density, "params", [f"θ{j}" for j in range(len(theta_ref))])),
        theta_ref=theta_ref,
        thetas=thetas,
        edges=e,
        ratio=ratio,
        error=error,
        n_events=int(n),
        ess=ess,
    )


def simulated_dependence(
    x,
    theta,
    theta_ref,
    thetas,
    *,
    edges,
    names: Sequence[str] | None = None,
    params: Sequence[str] | None = None,
    source: str = "simulated",
    atol: float = 1e-6,
) -> ParameterDependence:
    """The same ratios from simulated events at each point (independent samples, Poisson errors).

    Arguments:
        x: simulated events, shape ``(N, d)``.
        theta: their parameters, shape ``(N, k)``.
        theta_ref: the reference point ``(k,)``: events within ``atol`` of it form the denominator.
        thetas: the points ``(G, k)``; a point without events gets ``NaN`` ratios.
        edges: bin edges ``(d, B + 1)``, e.g. :attr:`ParameterDependence.edges` of a reweighted result.
        names, params: labels (default ``x0, …`` and ``θ0, …``).
        source: label of the result.
        atol: tolerance when matching event parameters to the points.

    Returns:
        A :class:`ParameterDependence` with ``ess`` the number of events at each point.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> x, theta = ToyModel().grid_dataset(500, grid=[[0.0, 0.0], [1.0, 0.0]], seed=0)
        >>> axes = [np.linspace(100, 800, 6)] * 2 + [np.linspace(-3.2, 3.2, 6), np.linspace(-4, 2, 6)]
        >>> edges = np.stack(axes)  # d B+1
        >>> simulated_dependence(x, theta, [0.0, 0.0], [[1.0, 0.0], [0.5, 0.0]], edges=edges).ess.tolist()
        [500.0, 0.0]
    """
    xs, ts = as_numpy(x, "x", ndim=2), as_numpy(theta, "theta", ndim=2)
    if len(xs) != len(ts):
        raise ValueError(f"x {xs.shape} and theta {ts.shape} need one row per event")
    k = ts.shape[1]
    theta_ref = _theta(theta_ref, "theta_ref", k).reshape(k)
    thetas = _theta(thetas, "thetas", k).reshape(-1, k)
    e = _edges(xs, edges, 0, None)
    d, B, G = xs.shape[1], e.shape[1] - 1, len(thetas)
    names = [f"x{i}" for i in range(d)] if names is None else list(names)
    params = [f"θ{j}" for j in range(k)] if params is None else list(params)

    def histograms(point: np.ndarray) -> tuple[np.ndarray, int]:
        rows = np.all(np.abs(ts - point) <= atol, axis=1)
        sel = xs[rows]
        return np.stack([np.histogram(_fold(sel[:, i], e[i]), e[i])[0] for i in range(d)]).astype(float), len(sel)

    h_ref, n_ref = histograms(theta_ref)
    if n_ref == 0:
        raise ValueError(f"no simulated events at theta_ref = {theta_ref.tolist()}")
    ratio = np.full((G, d, B), np.nan)
    error = np.full((G, d, B), np.nan)
    ess = np.zeros(G)
    for g, point in enumerate(thetas):
        h, n_g = histograms(point)
        ess[g] = n_g
        if n_g == 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (h / n_g) / (h_ref / n_ref)
            err = r * np.sqrt(1 / h + 1 / h_ref)
        ok = (h > 0) & (h_ref > 0)
        ratio[g] = np.where(ok, r, np.nan)
        error[g] = np.where(ok, err, np.nan)
    return ParameterDependence(
        source=str(source),
        names=tuple(names),
        params=tuple(params),
        theta_ref=theta_ref,
        thetas=thetas,
        edges=e,
        ratio=ratio,
        error=error,
        n_events=int(n_ref),
        ess=ess,
    )
