"""Figures that show whether a trained model can be trusted (the journal's Figs. 4–15).

Each function draws a result of :mod:`gmmpyro.validation`, takes ``axes=`` or makes its own
figure, never draws on pyplot's current axes, and returns the matplotlib ``Figure``:

* :func:`plot_marginals` — 1-D marginals with a ratio panel and statistical bands (Figs. 4, 8, 14);
* :func:`plot_pairs` — 2-D marginals of all pairs, or their pull map (eq. 10; Figs. 5–7, 9);
* :func:`plot_parameter_dependence` — ``p(x|θ)/p(x|θ_ref)`` per marginal over a grid of ``θ`` (Figs. 10–13);
* :func:`plot_contour_agreement` — 68/95 % regions of model and reference with both MLEs (Fig. 15).

The model's own figures (its mixture, Fig. 2, and its training history) are in
:mod:`gmmpyro.plotting.model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..validation.histograms import EMPTY, MODEL_ONLY, REFERENCE_ONLY
from ._axes import MODEL, REFERENCE, TRUTH, band, given_axes, grid_shape, new_panels, point_cells

if TYPE_CHECKING:
    from ..validation.contours import ContourAgreement
    from ..validation.histograms import MarginalComparison
    from ..validation.pairs import PairComparison
    from ..validation.reweighting import ParameterDependence

__all__ = ["plot_contour_agreement", "plot_marginals", "plot_pairs", "plot_parameter_dependence"]

_STATUS_COLOURS = {EMPTY: "white", MODEL_ONLY: "black", REFERENCE_ONLY: "0.6"}
_MIN_WIDTH, _MIN_HEIGHT = 4.8, 4.2  # inches of a new contour figure: one panel and its legend
_WIDE_LEGEND = 5.6  # inches a one-row legend of the contour figure needs


# --------------------------------------------------------------------------- 1-D marginals


def plot_marginals(
    result: MarginalComparison,
    *,
    axes=None,
    ncols: int | None = None,
    labels: tuple[str, str] = ("model", "reference"),
    ratio_range: tuple[float, float] = (0.8, 1.2),
    log: bool = False,
):
    """1-D marginals of model and reference with a ratio panel (journal Figs. 4, 8 and 14).

    Upper panels: the density of each sample with its ±1σ statistical band; lower panels:
    model/reference with the model's band, and the reference's relative band around 1 (grey).

    Arguments:
        result: a :class:`~gmmpyro.validation.MarginalComparison`.
        axes: ``2·d`` axes, ``[main_0, ratio_0, main_1, ratio_1, …]``; a new figure if ``None``.
        ncols: observables per row of a new figure.
        labels: legend labels of the two samples.
        ratio_range: y range of the ratio panels.
        log: logarithmic density axis.

    Returns:
        The matplotlib ``Figure``.
    """
    d = len(result.marginals)
    if axes is None:
        nrows, ncols = grid_shape(d, ncols)
        cells = [(2 * (i // ncols) + k, i % ncols) for i in range(d) for k in (0, 1)]  # main, ratio
        fig, flat = new_panels(
            2 * nrows, ncols, cells, figsize=(3.6 * ncols, 3.9 * nrows), layout="constrained",
            gridspec_kw={"height_ratios": [3, 1] * nrows},
        )  # fmt: skip
    else:
        fig, flat = given_axes(axes, 2 * d, "plot_marginals")
    pairs = list(zip(flat[::2], flat[1::2], strict=True))
    space = "latent " if result.space == "latent" else ""
    for m, (main, ratio) in zip(result.marginals, pairs, strict=True):
        width = np.diff(m.edges)
        for values, errors, colour, label in (
            (m.reference, m.reference_error, REFERENCE, labels[1]),
            (m.model, m.model_error, MODEL, labels[0]),
        ):
            dens, err = values / width, errors / width
            main.stairs(dens, m.edges, color=colour, label=label, lw=1.2)
            band(main, m.edges, dens, err, colour, alpha=0.25)
        if log:
            main.set_yscale("log")
        main.set_ylabel("density")
        main.set_xlim(m.edges[0], m.edges[-1])
        main.tick_params(labelbottom=False)
        main.set_title(f"{m.name}: χ²/ndf = {m.chi2:.0f}/{m.ndf}", fontsize="small")
        with np.errstate(divide="ignore", invalid="ignore"):
            r = m.model / m.reference
            r_err = m.model_error / m.reference
            ref_rel = m.reference_error / m.reference
        band(ratio, m.edges, np.ones_like(r), np.nan_to_num(ref_rel), "0.5", alpha=0.3)
        band(ratio, m.edges, r, r_err, MODEL, alpha=0.25)
        ratio.stairs(r, m.edges, color=MODEL, lw=1.2)
        ratio.axhline(1.0, color=REFERENCE, lw=0.8)
        ratio.set_ylim(*ratio_range)
        ratio.set_xlim(m.edges[0], m.edges[-1])
        ratio.sharex(main)
        ratio.set_xlabel(f"{space}{m.name}")
        ratio.set_ylabel(f"{labels[0]}/{labels[1][:3]}.", fontsize="small")
    pairs[0][0].legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- 2-D marginals and pulls


def _status_layer(ax, x, y, status, codes) -> None:
    from matplotlib.colors import ListedColormap

    colours = [_STATUS_COLOURS[c] for c in codes]
    index = np.full(status.shape, -1)
    for j, c in enumerate(codes):
        index[status == c] = j
    layer = np.ma.masked_less(index, 0)
    ax.pcolormesh(x, y, layer.T, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(codes) - 0.5)


def plot_pairs(result: PairComparison, *, show: str = "pull", axes=None, pull_range: float = 5.0):
    """2-D marginals of every pair of observables, or their pull map (journal eq. 10, Figs. 5–7, 9).

    Pairs fill the lower triangle of a ``(d-1) × (d-1)`` grid. In the pull map cells are coloured
    by the pull (clipped at ``±pull_range``); cells where both samples are empty are white, where
    only the model has events black, where only the reference has events grey. In the ``"model"``
    and ``"reference"`` views (fraction of events per cell, log colour scale) empty cells are white
    and, in the model view, cells without reference events black.

    Arguments:
        result: a :class:`~gmmpyro.validation.PairComparison`.
        show: ``"pull"``, ``"model"`` or ``"reference"``.
        axes: one axes per pair (in ``result.pairs`` order); a new figure if ``None``.
        pull_range: colour-scale limit of the pulls.

    Returns:
        The matplotlib ``Figure``.
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Patch

    if show not in ("pull", "model", "reference"):
        raise ValueError(f"show must be 'pull', 'model' or 'reference', got {show!r}")
    names = list(result.names)
    d = len(names)
    if axes is None:
        n = d - 1
        cells = [(names.index(p.names[1]) - 1, names.index(p.names[0])) for p in result.pairs]  # lower triangle
        fig, ax_list = new_panels(n, n, cells, figsize=(2.6 * n + 1.6, 2.4 * n + 0.6), layout="constrained")
    else:
        fig, ax_list = given_axes(axes, len(result.pairs), "plot_pairs")
    if show == "pull":
        norm, cmap = Normalize(-pull_range, pull_range), "RdBu_r"
    else:
        values = np.concatenate([getattr(p, show).ravel() for p in result.pairs])
        positive = values[values > 0]
        lo, hi = (positive.min(), positive.max()) if positive.size else (1e-6, 1.0)
        norm, cmap = LogNorm(lo, max(hi, lo * 10)), "viridis"
    mappable = None
    for p, ax in zip(result.pairs, ax_list, strict=True):
        x, y = p.edges_x, p.edges_y
        if show == "pull":
            z = np.ma.masked_where(p.status != 0, np.clip(p.pull, -pull_range, pull_range))
            codes = (EMPTY, MODEL_ONLY, REFERENCE_ONLY)
        else:
            z = np.ma.masked_less_equal(getattr(p, show), 0)
            codes = (EMPTY, MODEL_ONLY) if show == "model" else (EMPTY,)
        mappable = ax.pcolormesh(x, y, z.T, norm=norm, cmap=cmap)
        status = np.where(p.status == REFERENCE_ONLY, -1, p.status) if show == "model" else p.status
        _status_layer(ax, x, y, status, codes)
        ax.set_xlabel(p.names[0], fontsize="small")
        ax.set_ylabel(p.names[1], fontsize="small")
        ax.tick_params(labelsize="x-small")
    label = {"pull": "pull on model/reference (eq. 10)", "model": "model: fraction per cell"}.get(
        show, "reference: fraction per cell"
    )
    fig.colorbar(mappable, ax=ax_list, label=label, shrink=0.8)
    legend = {"pull": ("empty", "model only", "reference only"), "model": ("empty", "no reference events")}
    if show in legend:
        colours = [_STATUS_COLOURS[c] for c in (EMPTY, MODEL_ONLY, REFERENCE_ONLY)]
        handles = [Patch(facecolor=c, edgecolor="0.3", label=t) for c, t in zip(colours, legend[show], strict=False)]
        fig.legend(handles=handles, loc="upper right", fontsize="small", frameon=False)
    return fig


# --------------------------------------------------------------------------- parameter dependence


def plot_parameter_dependence(
    result: ParameterDependence,
    *,
    observable: str,
    compare: Sequence[ParameterDependence] = (),
    axes=None,
    ncols: int | None = None,
    ratio_range: tuple[float, float] | None = None,
):
    """How one marginal changes with ``θ``: ``p(x|θ)/p(x|θ_ref)`` at each point (journal Figs. 10–13).

    One panel per parameter point (a full 2-parameter grid is laid out as the parameter plane).
    The result is drawn as a black line with its band; each ``compare`` result (the truth,
    reweighted, as a coloured line; simulated events as points with error bars) on top.

    Arguments:
        result: the model's :class:`~gmmpyro.validation.ParameterDependence` (usually reweighted).
        observable: which observable.
        compare: other results on the same points and edges, e.g. the truth and the simulation.
        axes: one axes per point; a new figure if ``None``.
        ncols: panels per row (then a plain grid in point order).
        ratio_range: y range; default from the data.

    Returns:
        The matplotlib ``Figure``.
    """
    if observable not in result.names:
        raise ValueError(f"unknown observable {observable!r}; the observables are {list(result.names)}")
    i = result.names.index(observable)
    for other in compare:
        if other.edges.shape != result.edges.shape or not np.allclose(other.edges[i], result.edges[i]):
            raise ValueError(f"compare result {other.source!r} has other bin edges: pass edges=result.edges")
        if other.thetas.shape != result.thetas.shape or not np.allclose(other.thetas, result.thetas):
            raise ValueError(f"compare result {other.source!r} is on other parameter points")
    G = len(result.thetas)
    if axes is None:
        nrows, ncols_, cells = point_cells(result.thetas, ncols)
        fig, ax_list = new_panels(
            nrows, ncols_, cells, figsize=(2.9 * ncols_, 2.3 * nrows), sharex=True, sharey=True, layout="constrained"
        )
    else:
        fig, ax_list = given_axes(axes, G, "plot_parameter_dependence")
    edges = result.edges[i]
    centres = 0.5 * (edges[1:] + edges[:-1])
    for g, ax in enumerate(ax_list):
        r, e = result.ratio[g, i], result.error[g, i]
        band(ax, edges, r, np.nan_to_num(e), MODEL, alpha=0.25)
        ax.stairs(r, edges, color=MODEL, lw=1.2, label=result.source)
        for j, other in enumerate(compare):
            colour = REFERENCE if other.source == "simulated" else (TRUTH if j == 0 else f"C{j + 4}")
            if other.source == "simulated":
                ax.errorbar(
                    centres, other.ratio[g, i], other.error[g, i], fmt="o", ms=2.5, color=colour,
                    lw=0.8, label=other.source,
                )  # fmt: skip
            else:
                ax.stairs(other.ratio[g, i], edges, color=colour, lw=1.0, ls="--", label=other.source)
        ax.axhline(1.0, color="0.5", lw=0.6)
        ax.set_title(result.point_label(g), fontsize="x-small")
        ax.tick_params(labelsize="x-small")
    if ratio_range is None:
        values = [result.ratio[:, i]] + [o.ratio[:, i] for o in compare]
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        lo, hi = (np.quantile(finite, [0.01, 0.99]) if finite.size else (0.5, 1.5)).tolist()
        pad = 0.1 * max(hi - lo, 0.1)
        ratio_range = (min(lo, 1.0) - pad, max(hi, 1.0) + pad)
    for ax in ax_list:
        ax.set_ylim(*ratio_range)
        ax.set_xlim(edges[0], edges[-1])
    ax_list[0].legend(fontsize="x-small")
    ref = ", ".join(f"{p}={v:.3g}" for p, v in zip(result.params, result.theta_ref, strict=True))
    fig.supxlabel(observable, fontsize="small")
    fig.supylabel(f"p({observable} | θ) / p({observable} | {ref})", fontsize="small")
    return fig


# --------------------------------------------------------------------------- inference agreement (Fig. 15)


def plot_contour_agreement(
    result: ContourAgreement,
    *,
    axes=None,
    ncols: int | None = None,
    trained_points=None,
    zoom: bool = True,
    labels: tuple[str, str] = ("model", "truth"),
):
    """68 % (solid) and 95 % (dashed) regions of the model (blue) and the reference (orange) for
    each pseudo-dataset, with both MLEs (crosses) and the true point (black dot) — journal Fig. 15.

    Arguments:
        result: a :class:`~gmmpyro.validation.ContourAgreement`.
        axes: one axes per pseudo-dataset; a new figure if ``None``.
        ncols: panels per row (default: the layout of the true points in the parameter plane).
        trained_points: ``(T, 2)`` parameter points of the training data, drawn as open circles.
        zoom: limit each panel to its regions (with a margin) instead of the whole grid.
        labels: legend labels of model and reference.

    Returns:
        The matplotlib ``Figure``.
    """
    P = len(result.truths)
    if axes is None:
        nrows, ncols_, cells = point_cells(result.truths, ncols)
        size = (max(3.0 * ncols_, _MIN_WIDTH), max(2.9 * nrows, _MIN_HEIGHT))  # one panel stays readable
        fig, ax_list = new_panels(nrows, ncols_, cells, figsize=size, layout="constrained")
    else:
        fig, ax_list = given_axes(axes, P, "plot_contour_agreement")
    trained = None if trained_points is None else np.asarray(trained_points, dtype=float).reshape(-1, 2)
    colours = {"model": "C0", "reference": TRUTH}
    for i, ax in enumerate(ax_list):
        extent = []
        for which in ("reference", "model"):
            for cl, ls in ((0.68, "-"), (0.95, "--")):
                for line in result.contours(i, which, cl):
                    ax.plot(line[:, 0], line[:, 1], color=colours[which], ls=ls, lw=1.1)
                    extent.append(line)
            mle = getattr(result, f"mle_{which}")[i]
            if np.isfinite(mle).all():
                ax.plot(*mle, "x", color=colours[which], ms=7, mew=1.5)
                extent.append(mle[None])
        ax.plot(*result.truths[i], "o", color="black", ms=4)
        gx, gy = result.grid_x[i], result.grid_y[i]
        if zoom and extent:
            pts = np.concatenate([*extent, result.truths[i][None]])
            span = np.maximum(pts.max(0) - pts.min(0), 0.05 * np.array([gx[-1] - gx[0], gy[-1] - gy[0]]))
            lo_, hi_ = pts.min(0) - 0.25 * span, pts.max(0) + 0.25 * span
            ax.set_xlim(max(lo_[0], gx[0]), min(hi_[0], gx[-1]))
            ax.set_ylim(max(lo_[1], gy[0]), min(hi_[1], gy[-1]))
        else:
            ax.set_xlim(gx[0], gx[-1])
            ax.set_ylim(gy[0], gy[-1])
        if trained is not None:
            ax.plot(trained[:, 0], trained[:, 1], "o", mfc="none", color="0.4", ms=6, zorder=0)
            ax.set_xlim(ax.get_xlim())  # open circles outside the zoom stay out
        if result.failed[i]:
            ax.set_title("scan failed", fontsize="x-small", color="red")
        else:
            ax.set_title(
                f"IoU {result.iou_68[i]:.2f} / {result.iou_95[i]:.2f}, Δ = {result.mle_distance[i]:.3f}",
                fontsize="x-small",
            )
        ax.tick_params(labelsize="x-small")
        ax.set_xlabel(result.params[0], fontsize="small")
        ax.set_ylabel(result.params[1], fontsize="small")
    handles = [
        ax_list[0].plot([], [], color="C0", label=f"{labels[0]} 68 % / 95 %")[0],
        ax_list[0].plot([], [], color=TRUTH, label=f"{labels[1]} 68 % / 95 %")[0],
        ax_list[0].plot([], [], "x", color="0.3", label="MLE")[0],
        ax_list[0].plot([], [], "o", color="black", ms=4, label="true point")[0],
    ]
    wide = fig.get_figwidth() >= _WIDE_LEGEND  # four entries fit in one row
    fig.legend(handles=handles, loc="outside lower center", ncols=4 if wide else 2, fontsize="small", frameon=False)
    return fig
