"""Figures for frequentist inference and its comparison with a posterior.

:func:`plot_profile` draws a :class:`~gmmpyro.inference.profile.ProfileScan`; :func:`compare`
puts profile-likelihood intervals and contours beside the posterior's highest-density
intervals and regions from an ArviZ object, the 1-D panels on the common scale
``q = -2 Δln L``. Both mark an optional true point, take ``ax=``/``axes=`` and return the figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..inference.wilks import delta_q
from ._axes import POSTERIOR, PROFILE, given_axes, new_panels

if TYPE_CHECKING:
    from ..inference.profile import ProfileScan

__all__ = ["compare", "hdr_levels", "plot_profile"]

_LEVEL_STYLES = ("-", "--", ":", "-.")  # one per confidence level, in increasing order
_TRUTH = "black"  # not TRUTH (orange): orange is the posterior here
_MARKS = {
    "mle": {"ls": "none", "marker": "o", "color": PROFILE, "ms": 7, "mec": "white", "mew": 0.8},
    "median": {"ls": "none", "marker": "D", "color": POSTERIOR, "ms": 6, "mec": "white", "mew": 0.8},
    "truth": {"ls": "none", "marker": "*", "color": _TRUTH, "ms": 12, "mec": "white", "mew": 0.6},
}
_LABELS = {"mle": "MLE", "median": "posterior median", "truth": "truth"}
_TRUTH_LINE = {"color": _TRUTH, "ls": ":", "lw": 1.3, "zorder": 2}


def _style(j: int) -> str:
    """Line style of the ``j``-th confidence level."""
    return _LEVEL_STYLES[j % len(_LEVEL_STYLES)]


def _row(n: int, axes, what: str):
    """The ``n`` given axes, or a new figure with ``n`` panels in a row."""
    if axes is None:
        return new_panels(1, n, figsize=(4.2 * n, 3.8), layout="constrained")
    return given_axes(axes, n, what)


def _percent(c: float) -> str:
    return f"{100 * c:.3g} %"


def _truth(scan: ProfileScan, truth) -> dict[str, float]:
    """The checked ``truth`` values of the scanned parameters (other model parameters ignored)."""
    if truth is None:
        return {}
    if not isinstance(truth, Mapping):
        raise ValueError(f"truth must be a dict {{parameter name: value}}, got {type(truth).__name__}")
    unknown = [n for n in truth if n not in scan.model_params]
    if unknown:
        raise ValueError(
            f"truth names unknown parameter(s) {unknown}; the model's parameters are {list(scan.model_params)}"
        )
    out = {}
    for name, value in truth.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"truth[{name!r}] must be a number, got {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"truth[{name!r}] must be finite, got {v}")
        if name in scan.params:
            out[name] = v
    return out


def _profile_curve(ax, x: np.ndarray, q: np.ndarray, color, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Draw the scan points of ``q`` and the cubic spline through them on which intervals are
    solved; return the drawn curve ``(x, q)``."""
    from scipy.interpolate import CubicSpline

    ax.plot(x, q, "o", color=color, ms=2.5, zorder=3)
    if x.size <= 2:
        return x, q
    fine = np.linspace(x[0], x[-1], 20 * x.size + 1)
    spline = np.maximum(CubicSpline(x, q)(fine), 0.0)
    ax.plot(fine, spline, color=color, lw=1.3, zorder=3, **kw)
    return fine, spline


def _level_line(ax, level: float, c: float) -> None:
    """A grey line at ``q = level`` with its confidence level written at the right."""
    ax.axhline(level, color="0.55", lw=0.7, zorder=1)
    ax.text(
        0.99,
        level,
        _percent(c),
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="bottom",
        fontsize="small",
        color="0.4",
    )


def plot_profile(
    scan: ProfileScan,
    ax=None,
    *,
    cl: Sequence[float] = (0.68, 0.95),
    truth: Mapping[str, float] | None = None,
    color: str = PROFILE,
):
    """Draw a scan: the curve ``q`` with its intervals (1-D), or filled contours (2-D), MLE marked.

    1-D: the scan points of ``q = -2 Δln L`` and the cubic spline through them, grey lines at
    the thresholds ``Δq`` (:func:`~gmmpyro.inference.wilks.delta_q`, 1 dof) and the interval
    ends (line style by level, as in :func:`compare`). 2-D: the regions ``q < Δq`` (2 dof),
    darker for the lower level, from ``q`` interpolated as in
    :meth:`~gmmpyro.inference.scan_result.ProfileScan.contour`. Points whose conditional fit
    failed are red crosses.

    Arguments:
        scan: a 1-D or 2-D :class:`~gmmpyro.inference.profile.ProfileScan`.
        ax: matplotlib axes; a new figure if ``None``.
        cl: confidence levels drawn.
        truth: ``{name: value}``, the true parameter point, marked as in :func:`compare`.
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
        >>> plot_profile(s, ax=ax, truth={"cx": 0.8}) is fig
        True
        >>> plt.close(fig)
    """
    from ..inference.wilks import _smooth_grid

    truth = _truth(scan, truth)
    fig, (ax,) = _row(1, None if ax is None else [ax], "plot_profile")
    cl = sorted(cl)
    bad = ~scan.valid
    if len(scan.params) == 1:
        name = scan.params[0]
        x, q = scan.curve(name)
        _profile_curve(ax, x, q, color, label="profile likelihood")
        if bad.any():
            ax.plot(scan.grid[name][bad], np.zeros(bad.sum()), "x", color="red", label="not converged")
        for j, c in enumerate(cl):
            _level_line(ax, delta_q(c, 1), c)
            for end in scan.interval(name, c):
                if np.isfinite(end):
                    ax.axvline(end, color=color, lw=0.9, ls=_style(j))
        ax.plot(scan.mle.values[name], 0, **{**_MARKS["mle"], "color": color}, clip_on=False, zorder=5, label="MLE")
        if name in truth:
            ax.axvline(truth[name], **_TRUTH_LINE, label="truth")
        ax.set_ylim(0, 1.5 * delta_q(cl[-1], 1))
        ax.set_xlabel(name)
        ax.set_ylabel(r"$q = -2\,\Delta\ln L$")
    else:
        n0, n1 = scan.params
        thr = [delta_q(c, 2) for c in cl]
        fx, fy, q = _smooth_grid(scan.grid[n0], scan.grid[n1], scan.q, 8, mask=bad)
        levels = [min(0.0, float(q.min())) - 1.0, *thr]
        alphas = np.linspace(0.55, 0.2, len(thr))
        for lo, hi, a in zip(levels[:-1], levels[1:], alphas, strict=True):
            ax.contourf(fx, fy, q.T, levels=[lo, hi], colors=[color], alpha=a)
        ax.contour(fx, fy, q.T, levels=thr, colors=[color], linewidths=1.0)
        if bad.any():
            ii, jj = np.nonzero(bad)
            ax.plot(scan.grid[n0][ii], scan.grid[n1][jj], "x", color="red", ms=3, label="not converged")
        ax.plot(scan.mle.values[n0], scan.mle.values[n1], **{**_MARKS["mle"], "color": color}, zorder=5, label="MLE")
        if len(truth) == 2:
            ax.plot(truth[n0], truth[n1], **_MARKS["truth"], zorder=6, label="truth")
        ax.set_xlabel(n0)
        ax.set_ylabel(n1)
        ax.set_title(" / ".join(_percent(c) for c in cl) + " CL", fontsize="small")
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
        raise TypeError(f"idata needs a posterior group (an ArviZ InferenceData/DataTree), got {type(idata).__name__}")
    have = list(getattr(post, "data_vars", post))
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"posterior has no variable(s) {missing}; it has {have}")
    draws = np.stack([np.asarray(post[n].values, dtype=float).ravel() for n in names], -1)  # S p
    if draws.shape[0] > max_draws:
        draws = draws[np.random.default_rng(seed).choice(draws.shape[0], max_draws, replace=False)]
    return draws


def _span(*parts: np.ndarray, pad: float) -> tuple[float, float]:
    """Range of all finite values in ``parts``, widened by ``pad`` times its width on each side."""
    v = np.concatenate([np.ravel(p) for p in parts])
    v = v[np.isfinite(v)]
    lo, hi = float(v.min()), float(v.max())
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


def _below(x: np.ndarray, q: np.ndarray, top: float) -> np.ndarray:
    """The ``x`` where ``q <= top``, with one neighbour on either side (where the curve leaves)."""
    idx = np.nonzero(q <= top)[0]
    if idx.size == 0:
        return x[:0]
    return x[max(idx[0] - 1, 0) : idx[-1] + 2]


def _q_panel(ax, scan: ProfileScan, name: str, d: np.ndarray, cl, top: float, truth: dict) -> None:
    """A 1-D panel of :func:`compare`: ``q`` of profile and posterior (draws ``d``, shape ``(S,)``),
    intervals as bars at ``Δq``, MLE and posterior median on the axis, ``y`` up to ``top``."""
    import arviz as az
    from scipy.stats import gaussian_kde

    x, q = scan.curve(name)
    x, q = _profile_curve(ax, x, q, PROFILE)
    t = np.linspace(min(x[0], d.min()), max(x[-1], d.max()), 400)
    dens = gaussian_kde(d)(t)
    with np.errstate(divide="ignore"):
        q_post = -2 * np.log(dens / dens.max())
    ax.plot(t, q_post, color=POSTERIOR, lw=1.3, zorder=3)
    gap = 0.035 * top  # the posterior's bar sits just below the profile's
    ends = []
    for j, c in enumerate(cl):
        ls = _style(j)
        level = delta_q(c, 1)
        _level_line(ax, level, c)
        lo, hi = scan.interval(name, c)
        for end, edge, arrow in ((lo, x[0], "<"), (hi, x[-1], ">")):  # open beyond the scan: an arrow
            if math.isnan(end):
                ax.plot(edge, level, marker=arrow, color=PROFILE, ms=6, zorder=4)
        lo, hi = (x[0] if math.isnan(lo) else lo), (x[-1] if math.isnan(hi) else hi)
        ax.hlines(level, lo, hi, color=PROFILE, lw=2.5, ls=ls, zorder=4)
        # the probability passed by position: ``hdi_prob`` in ArviZ 0.x, ``prob`` in 1.x
        hdi = az.hdi(d, c)
        ax.hlines(level - gap, *hdi, color=POSTERIOR, lw=2.5, ls=ls, zorder=4)
        ends += [lo, hi, *hdi]
    points = [scan.mle.values[name], float(np.median(d))]
    for key, value in zip(("mle", "median"), points, strict=True):
        ax.plot(value, 0, **_MARKS[key], clip_on=False, zorder=5)
    if name in truth:
        ax.axvline(truth[name], **_TRUTH_LINE)
        points.append(truth[name])
    ax.set_xlim(*_span(_below(x, q, top), _below(t, q_post, top), np.array(ends), np.array(points), pad=0.04))
    ax.set_ylim(0, top)
    ax.set_xlabel(name)


def _region_panel(ax, scan: ProfileScan, draws: np.ndarray, cl, truth: dict, gridsize: int) -> None:
    """The 2-D panel of :func:`compare`: profile contours and posterior HDRs of ``draws (S, 2)``, markers."""
    from scipy.stats import gaussian_kde

    names = scan.params
    mle, median = np.array([scan.mle.values[n] for n in names]), np.median(draws, 0)  # 2, 2
    extent = [mle[None], median[None]]
    for j, c in enumerate(cl):
        for line in scan.contour(c):
            ax.plot(line[:, 0], line[:, 1], color=PROFILE, lw=1.5, ls=_style(j))
            extent.append(line)
    kde = gaussian_kde(draws.T)
    lims = [_span(np.quantile(draws[:, i], [0.001, 0.999]), pad=0.15) for i in range(2)]  # around the draws
    gx, gy = (np.linspace(lo, hi, gridsize) for lo, hi in lims)
    X, Y = np.meshgrid(gx, gy)  # gy gx
    Z = kde(np.vstack([X.ravel(), Y.ravel()])).reshape(X.shape)
    levels = hdr_levels(kde, draws, cl)  # decreasing in cl
    hdr = ax.contour(
        X,
        Y,
        Z,
        levels=levels[::-1],
        colors=[POSTERIOR],
        linestyles=[_style(j) for j in reversed(range(len(cl)))],
        linewidths=1.5,
    )
    extent += [p.vertices for p in hdr.get_paths() if len(p.vertices)]
    ax.plot(*mle, **_MARKS["mle"], zorder=5)
    ax.plot(*median, **_MARKS["median"], zorder=5)
    if len(truth) == 2:
        ax.plot(truth[names[0]], truth[names[1]], **_MARKS["truth"], zorder=6)
        extent.append(np.array([[truth[names[0]], truth[names[1]]]]))
    elif truth:  # a truth of one parameter only: a line
        (name,) = truth
        (ax.axvline if name == names[0] else ax.axhline)(truth[name], **_TRUTH_LINE)
    pts = np.concatenate(extent)
    ax.set_xlim(*_span(pts[:, 0], pad=0.08))
    ax.set_ylim(*_span(pts[:, 1], pad=0.08))
    ax.set_box_aspect(1)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])


def compare(
    scan: ProfileScan,
    idata,
    *,
    cl: Sequence[float] = (0.68, 0.95),
    truth: Mapping[str, float] | None = None,
    axes=None,
    max_draws: int = 4000,
    gridsize: int = 80,
    seed: int = 0,
):
    r"""Profile likelihood and posterior side by side, on one scale.

    Profile likelihood in blue, posterior in orange; the levels ``cl`` by line style (first
    solid, then dashed, dotted), keyed in one legend below the panels with the markers: MLE
    (circle), posterior median (diamond, per parameter) and, if given, the truth (black star,
    or vertical dotted line).

    For a 2-D scan, three panels. The first shows the profile-likelihood contours
    (:meth:`~gmmpyro.inference.scan_result.ProfileScan.contour`, ``q = Δq`` with 2 dof) and the
    posterior's highest-density regions (a Gaussian KDE of the draws, see :func:`hdr_levels`).
    Then one panel per parameter on the common scale ``q``: the profile
    ``q = -2 Δln L`` (:meth:`~gmmpyro.inference.scan_result.ProfileScan.curve`) and
    ``-2 ln(p/p_max)`` of the marginal posterior density (KDE), which coincide for a Gaussian
    likelihood and flat priors. Grey lines mark ``Δq`` (:func:`~gmmpyro.inference.wilks.delta_q`,
    1 dof: 1 and 3.84); the profile interval is the bar on that line (where its curve crosses
    it), the posterior's highest-density interval (``arviz.hdi``) the bar just below it. A 1-D
    scan gives the 1-D panel only.

    Arguments:
        scan: a 1-D or 2-D :class:`~gmmpyro.inference.profile.ProfileScan`.
        idata: an ArviZ object with a ``posterior`` group holding the scanned parameters by
            name, dims ``(chain, draw)`` (``arviz.InferenceData`` or ``xarray.DataTree``).
        cl: the levels drawn.
        truth: ``{name: value}``, the true parameter point, marked where it is scanned (entries
            of other model parameters are ignored).
        axes: ``1 + len(scan.params)`` axes for a 2-D scan (1 for a 1-D scan); a new figure
            (constrained layout, the 1-D panels sharing ``q``) if ``None``. The legend goes
            below the panels if the figure has a constrained layout, else into the first axes.
        max_draws: the KDE uses at most this many draws (a seeded random subset).
        gridsize: KDE evaluation grid per axis of the 2-D panel.
        seed: seed of the subset.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: ``truth`` is not a dict, names an unknown parameter or holds a value that
            is not a finite number; the posterior lacks a scanned parameter.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from gmmpyro.toy import ToyModel
        >>> from gmmpyro.inference.posterior_data import to_arviz
        >>> from gmmpyro.inference.profile import scan
        >>> model = ToyModel()
        >>> x = model.sample(400, [0.8, -0.8], seed=1)  # N d
        >>> s = scan(model, x, {"cx": (0.4, 1.2, 25), "cy": (-1.2, -0.4, 25)})
        >>> rng = np.random.default_rng(0)  # stand-in for NUTS draws: the Gaussian approximation
        >>> draws = rng.multivariate_normal(s.mle.theta, s.mle.covariance, size=(2, 500))  # chain draw 2
        >>> idata = to_arviz({"posterior": {"cx": draws[..., 0], "cy": draws[..., 1]}})
        >>> fig = compare(s, idata, truth={"cx": 0.8, "cy": -0.8})
        >>> len(fig.axes)
        3
        >>> plt.close(fig)
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine
    from matplotlib.lines import Line2D

    names = scan.params
    cl = sorted(cl)
    truth = _truth(scan, truth)
    draws = _draws(idata, names, max_draws, seed)  # S p
    n_panels = 1 if len(names) == 1 else 1 + len(names)
    if axes is None:
        size = (3.7 * n_panels + 0.6, 4.4) if n_panels > 1 else (4.8, 5.0)
        fig, axs = new_panels(1, n_panels, figsize=size, layout="constrained")
        for ax in axs[n_panels - len(names) + 1 :]:  # the 1-D panels share q
            ax.sharey(axs[n_panels - len(names)])
            ax.tick_params(labelleft=False)
    else:
        fig, axs = given_axes(axes, n_panels, "compare")
    one_d = axs[n_panels - len(names) :]  # after the 2-D panel, if any
    if len(names) == 2:
        _region_panel(axs[0], scan, draws, cl, truth, gridsize)
    top = 1.5 * delta_q(cl[-1], 1)
    for ax, i, name in zip(one_d, range(len(names)), names, strict=True):
        _q_panel(ax, scan, name, draws[:, i], cl, top, truth)
        if len(names) == 2:
            ax.set_box_aspect(1)
        shared = ax is not one_d[0] and ax.get_shared_y_axes().joined(ax, one_d[0])
        if not shared:
            ax.set_ylabel("$-2\\,\\Delta\\ln L$ (profile)\n$-2\\ln(p/p_{\\max})$ (posterior)")
    region = "HDR" if len(names) == 2 else "HDI"
    handles = [
        Line2D([], [], color=colour, lw=2, ls=_style(j), label=f"{what} {_percent(c)}")
        for colour, what in ((PROFILE, "profile"), (POSTERIOR, f"posterior {region}"))
        for j, c in enumerate(cl)
    ]
    handles += [Line2D([], [], **_MARKS[k], label=_LABELS[k]) for k in ("mle", "median", "truth")[: 3 if truth else 2]]
    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        ncols = math.ceil(len(handles) / 2) if n_panels > 1 else 2  # two rows below three panels
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize="small", frameon=False)
    else:
        axs[0].legend(handles=handles, fontsize="small")
    return fig
