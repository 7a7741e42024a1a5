"""Figures for frequentist inference and its comparison with a posterior.

:func:`plot_profile` draws a :class:`~gmmpyro.inference.profile.ProfileScan`; :func:`compare`
puts profile-likelihood intervals and contours beside the posterior's highest-density
intervals and regions from an ArviZ object. Both take ``ax=``/``axes=`` and return the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..inference.wilks import delta_q
from ._axes import POSTERIOR, PROFILE, given_axes, new_panels

if TYPE_CHECKING:
    from ..inference.profile import ProfileScan

__all__ = ["compare", "hdr_levels", "plot_profile"]


def _row(n: int, axes, what: str):
    """The ``n`` given axes, or a new figure with ``n`` panels in a row."""
    if axes is None:
        return new_panels(1, n, figsize=(4.2 * n, 3.8))
    return given_axes(axes, n, what)


def plot_profile(scan: ProfileScan, ax=None, *, cl: Sequence[float] = (0.68, 0.95), color: str = PROFILE):
    """Draw a scan: the curve ``q`` with its intervals (1-D), or filled contours (2-D), MLE marked.

    Arguments:
        scan: a 1-D or 2-D :class:`~gmmpyro.inference.profile.ProfileScan`.
        ax: matplotlib axes; a new figure if ``None``.
        cl: confidence levels drawn (thresholds from :func:`~gmmpyro.inference.profile.delta_q`).
        color: colour of curve, lines and fill.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from gmmpyro.toy import ToyModel
        >>> from gmmpyro.inference.profile import scan
        >>> model = ToyModel()
        >>> s = scan(model, model.sample(400, [0.8, -0.8], seed=1), {"cx": (0.4, 1.2, 21)}, profile=["cy"])
        >>> fig, ax = plt.subplots()
        >>> plot_profile(s, ax=ax) is fig
        True
        >>> plt.close(fig)
    """
    fig, (ax,) = _row(1, None if ax is None else [ax], "plot_profile")
    cl = sorted(cl)
    if len(scan.params) == 1:
        name = scan.params[0]
        x, q = scan.curve(name)
        ax.plot(x, q, "-", color=color, label="profile likelihood")
        bad = ~scan.valid
        if bad.any():
            ax.plot(scan.grid[name][bad], np.zeros(bad.sum()), "x", color="red", label="not converged")
        for c, ls in zip(cl, ("--", ":", "-."), strict=False):
            thr = delta_q(c, 1)
            ax.axhline(thr, color="gray", lw=0.8, ls=ls)
            for end in scan.interval(name, c):
                if np.isfinite(end):
                    ax.axvline(end, color=color, lw=0.8, ls=ls)
            ax.text(x[0], thr, f" {c:.0%}", va="bottom", ha="left", color="gray", fontsize="small")
        ax.axvline(scan.mle.values[name], color="k", lw=0.8, label="MLE")
        ax.set_ylim(0, 2 * delta_q(cl[-1], 1))
        ax.set_xlabel(name)
        ax.set_ylabel(r"$q = -2\,\Delta\ln L$")
    else:
        n0, n1 = scan.params
        thr = [delta_q(c, 2) for c in cl]
        q = np.ma.masked_where(~scan.valid | np.isnan(scan.q), np.where(np.isposinf(scan.q), 1e30, scan.q))
        levels = [min(0.0, float(q.min())) - 1.0, *thr]
        alphas = np.linspace(0.55, 0.2, len(thr))
        for lo, hi, a in zip(levels[:-1], levels[1:], alphas, strict=True):
            ax.contourf(scan.grid[n0], scan.grid[n1], q.T, levels=[lo, hi], colors=[color], alpha=a)
        ax.contour(scan.grid[n0], scan.grid[n1], q.T, levels=thr, colors=[color], linewidths=1.0)
        bad = ~scan.valid
        if bad.any():
            ii, jj = np.nonzero(bad)
            ax.plot(scan.grid[n0][ii], scan.grid[n1][jj], "x", color="red", ms=3, label="not converged")
        ax.plot(scan.mle.values[n0], scan.mle.values[n1], "+", color="k", ms=10, mew=1.5, label="MLE")
        ax.set_xlabel(n0)
        ax.set_ylabel(n1)
        ax.set_title(" / ".join(f"{c:.0%}" for c in cl) + " CL", fontsize="small")
    ax.legend(fontsize="small")
    return fig


def hdr_levels(kde, draws: np.ndarray, cl: Sequence[float]) -> list[float]:
    """Density levels of the highest-density regions holding fractions ``cl`` of the draws.

    The region ``{p > level}`` holds a fraction ``cl`` of the draws when ``level`` is the
    ``1 - cl`` quantile of the density at the draws themselves.

    Arguments:
        kde: a density estimate of the draws, e.g. ``scipy.stats.gaussian_kde(draws.T)``.
        draws: shape ``(S, p)``.
        cl: the fractions.

    Returns:
        One level per fraction, decreasing as ``cl`` grows.

    Example:
        >>> from scipy.stats import gaussian_kde
        >>> draws = np.random.default_rng(0).normal(size=(2000, 2))  # S p
        >>> lo68, lo95 = hdr_levels(gaussian_kde(draws.T), draws, (0.68, 0.95))
        >>> bool(lo68 > lo95)
        True
    """
    dens = kde(draws.T)
    return [float(np.quantile(dens, 1 - c)) for c in cl]


def _draws(idata, names: Sequence[str], max_draws: int, seed: int) -> np.ndarray:
    post = getattr(idata, "posterior", None)
    if post is None:
        raise TypeError(
            f"idata needs a posterior group (an ArviZ InferenceData/DataTree), got {type(idata).__name__}"
        )
    have = list(getattr(post, "data_vars", post))
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"posterior has no variable(s) {missing}; it has {have}")
    draws = np.stack([np.asarray(post[n].values, dtype=float).ravel() for n in names], -1)  # S p
    if draws.shape[0] > max_draws:
        draws = draws[np.random.default_rng(seed).choice(draws.shape[0], max_draws, replace=False)]
    return draws


def compare(
    scan: ProfileScan,
    idata,
    *,
    cl: Sequence[float] = (0.68, 0.95),
    axes=None,
    max_draws: int = 4000,
    gridsize: int = 80,
    seed: int = 0,
):
    """Profile likelihood and posterior side by side.

    For a 2-D scan, three panels: the profile-likelihood contours (solid) with the posterior's
    highest-density regions (dashed, from a Gaussian KDE of the draws, see :func:`hdr_levels`),
    then for each parameter the relative profile likelihood ``exp(-q/2)`` beside the
    normalised marginal posterior density. In the 1-D panels each level is drawn as two
    horizontal segments: the profile interval (solid, at ``exp(-Δq/2)``, where the curve crosses)
    and the posterior's highest-density interval (dashed, just below). A 1-D scan gives the
    1-D panel only.

    Arguments:
        scan: a 1-D or 2-D :class:`~gmmpyro.inference.profile.ProfileScan`.
        idata: an ArviZ object with a ``posterior`` group holding the scanned parameters by
            name, dims ``(chain, draw)`` (``arviz.InferenceData`` or ``xarray.DataTree``).
        cl: the levels drawn.
        axes: ``1 + len(scan.params)`` axes for a 2-D scan (1 for a 1-D scan); new figure if ``None``.
        max_draws: the KDE uses at most this many draws (a seeded random subset).
        gridsize: KDE evaluation grid per axis of the 2-D panel.
        seed: seed of the subset.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from gmmpyro.toy import ToyModel
        >>> from gmmpyro.inference.posterior_data import to_arviz
        >>> from gmmpyro.inference.profile import scan
        >>> model = ToyModel()
        >>> x = model.sample(400, [0.8, -0.8], seed=1)
        >>> s = scan(model, x, {"cx": (0.4, 1.2, 21), "cy": (-1.2, -0.4, 21)})
        >>> rng = np.random.default_rng(0)  # stand-in for NUTS draws: the Gaussian approximation
        >>> draws = rng.multivariate_normal(s.mle.theta, s.mle.covariance, size=(2, 500))  # chain draw 2
        >>> idata = to_arviz({"posterior": {"cx": draws[..., 0], "cy": draws[..., 1]}})
        >>> fig = compare(s, idata)
        >>> len(fig.axes)
        3
        >>> plt.close(fig)
    """
    import arviz as az
    from scipy.stats import gaussian_kde

    names = scan.params
    cl = sorted(cl)
    draws = _draws(idata, names, max_draws, seed)  # S p
    fig, axs = _row(1 if len(names) == 1 else 1 + len(names), axes, "compare")
    one_d = axs if len(names) == 1 else axs[1:]
    if len(names) == 2:
        ax = axs[0]
        for j, c in enumerate(cl):
            for line in scan.contour(c):
                ax.plot(line[:, 0], line[:, 1], color=PROFILE, lw=max(0.6, 1.6 - 0.5 * j))
        kde = gaussian_kde(draws.T)
        lims = [
            (
                min(scan.grid[n][0], np.quantile(draws[:, i], 0.001)),
                max(scan.grid[n][-1], np.quantile(draws[:, i], 0.999)),
            )
            for i, n in enumerate(names)
        ]
        gx, gy = (np.linspace(lo, hi, gridsize) for lo, hi in lims)
        X, Y = np.meshgrid(gx, gy)  # gy gx
        Z = kde(np.vstack([X.ravel(), Y.ravel()])).reshape(X.shape)
        levels = hdr_levels(kde, draws, cl)  # decreasing in cl
        ax.contour(
            X,
            Y,
            Z,
            levels=sorted(levels),
            colors=[POSTERIOR],
            linestyles="--",
            linewidths=[max(0.6, 1.6 - 0.5 * j) for j in reversed(range(len(cl)))],
        )
        ax.plot(scan.mle.values[names[0]], scan.mle.values[names[1]], "+", color=PROFILE, ms=10, mew=1.5)
        ax.plot(*np.median(draws, 0), "x", color=POSTERIOR, ms=7, mew=1.5)
        ax.plot([], [], color=PROFILE, label="profile likelihood (MLE +)")
        ax.plot([], [], color=POSTERIOR, ls="--", label="posterior HDR (median ×)")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title(" / ".join(f"{c:.0%}" for c in cl), fontsize="small")
        ax.legend(fontsize="small")
    for ax, i, name in zip(one_d, range(len(names)), names, strict=True):
        x, q = scan.curve(name)
        ax.plot(x, np.exp(-0.5 * q), color=PROFILE, label=r"profile $L/L_{max}$")
        d = draws[:, i]
        t = np.linspace(min(x[0], d.min()), max(x[-1], d.max()), 400)
        dens = gaussian_kde(d)(t)
        ax.plot(t, dens / dens.max(), color=POSTERIOR, ls="--", label="posterior (max = 1)")
        for c in cl:
            level = float(np.exp(-0.5 * delta_q(c, 1)))
            lo, hi = scan.interval(name, c)
            ax.hlines(level, lo, hi, color=PROFILE, lw=2)
            # the probability passed by position: ``hdi_prob`` in ArviZ 0.x, ``prob`` in 1.x
            ax.hlines(level - 0.04, *az.hdi(d, c), color=POSTERIOR, lw=2, ls="--")
            ax.text(t[0], level, f"{c:.0%}", fontsize="small", va="bottom", color="gray")
        ax.set_xlabel(name)
        ax.set_ylim(0, 1.25)
        ax.legend(fontsize="small", loc="upper right")
    return fig
