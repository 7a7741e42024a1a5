"""Figures of the model itself: its mixture components (journal Fig. 2) and its training history.

Both take ``axes=`` or make their own figure, never draw on pyplot's current axes, and return
the matplotlib ``Figure``. The comparisons with reference events are in
:mod:`gmmpyro.plotting.validation`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._axes import MODEL, REFERENCE, given_axes, new_panels

__all__ = ["plot_mixture", "plot_training_history"]


# --------------------------------------------------------------------------- the mixture (Fig. 2)


def _component_densities(model, index, thetas, u_prev, u: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per point and component the (truncated) Gaussian density on ``u``: ``(G, N_G, U)``, and the total."""
    comps = model.components(thetas, index, u_prev)
    w, mu, sigma = (t.detach().double()[..., None] for t in comps)  # G N_G 1
    z = (u.double() - mu) / sigma
    dens = w * torch.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))
    column = index if isinstance(index, int) else [o.name for o in model.observables].index(index)
    if model.config.truncate and model.observables[column].bounded:
        lo, hi = model.latent_range
        dens = dens / (torch.special.ndtr((hi - mu) / sigma) - torch.special.ndtr((lo - mu) / sigma))
    dens = dens.cpu().numpy()
    return dens, dens.sum(1)


def plot_mixture(
    model,
    observable: str | int,
    thetas,
    *,
    u_prev=None,
    reference=None,
    bins: int = 50,
    axes=None,
    n_points: int = 500,
):
    """One observable's mixture in latent space and its Gaussian components at several ``θ`` (Fig. 2).

    Top row: the total density ``p(u|θ)`` (black) and each component ``w_g N(u; μ_g, σ_g)`` (thin
    coloured lines), with the reference events' histogram if given. Middle row (with
    ``reference``): reference/model. Bottom row: ``p(u|θ)/p(u|θ_0)``, the deformation relative to
    the first point.

    Arguments:
        model: a trained :class:`~gmmpyro.DensityModel`.
        observable: name or column of a continuous observable.
        thetas: the points, shape ``(G, k)``.
        u_prev: latent values of the observables before it in the autoregressive order, shape
            ``(i,)`` (needed, and then the densities are conditional, unless it comes first).
        reference: optional ``(x, theta)`` events, shapes ``(N, d)`` and ``(N, k)``; those at each
            point are histogrammed (only for the first observable in the order: a marginal).
        bins: histogram bins.
        axes: ``rows × G`` axes, row-major (rows 2, or 3 with ``reference``); new figure if ``None``.
        n_points: points of the density curves.

    Returns:
        The matplotlib ``Figure``.
    """
    names = [o.name for o in model.observables]
    column = names.index(observable) if isinstance(observable, str) and observable in names else observable
    if not isinstance(column, int) or not 0 <= column < len(names):
        raise ValueError(f"unknown observable {observable!r}; observables are {names}")
    position = model.order.index(column)
    if reference is not None and position > 0:
        raise ValueError(
            f"{names[column]!r} is not first in the autoregressive order: its mixture is conditional "
            "on u_prev, so it cannot be compared with a histogram of reference events"
        )
    thetas = torch.as_tensor(np.asarray(thetas, dtype=float), dtype=model.dtype).reshape(-1, len(model.params))
    G = thetas.shape[0]
    if u_prev is not None:
        u_prev = torch.as_tensor(np.asarray(u_prev, dtype=float), dtype=model.dtype).expand(G, -1)
    lo, hi = model.latent_range
    u = torch.linspace(lo, hi, n_points, dtype=torch.float64)
    with torch.no_grad():
        comps, total = _component_densities(model, column, thetas, u_prev, u)
    rows = 3 if reference is not None else 2
    if axes is None:
        fig, flat = new_panels(
            rows, G, figsize=(3.4 * G, 2.0 + 1.4 * rows), sharex=True, layout="constrained",
            gridspec_kw={"height_ratios": [3] + [1] * (rows - 1)},
        )  # fmt: skip
    else:
        fig, flat = given_axes(axes, rows * G, "plot_mixture")
    grid = np.asarray(flat, dtype=object).reshape(rows, G)
    un = u.numpy()
    hist = None
    if reference is not None:
        x_ref, th_ref = (np.asarray(torch.as_tensor(a).double().cpu()) for a in reference)
        edges = np.linspace(lo, hi, bins + 1)
        hist = []
        for g in range(G):
            rows_g = np.all(np.abs(th_ref - thetas[g].double().numpy()) <= 1e-6, axis=1)
            if not rows_g.any():
                hist.append(None)
                continue
            u_ref = model.projection.forward(torch.as_tensor(x_ref[rows_g])).double().numpy()[:, column]
            counts, _ = np.histogram(np.clip(u_ref, lo, hi), edges)
            n = counts.sum()
            hist.append((counts / n / np.diff(edges), np.sqrt(counts) / n / np.diff(edges), edges))
    for g in range(G):
        top = grid[0, g]
        for c in range(comps.shape[1]):
            top.plot(un, comps[g, c], lw=0.7, color=f"C{c % 10}", alpha=0.8)
        top.plot(un, total[g], color=MODEL, lw=1.4, label="model")
        label = ", ".join(f"{p}={v:.3g}" for p, v in zip(model.params, thetas[g].tolist(), strict=True))
        top.set_title(label, fontsize="small")
        top.set_ylim(bottom=0)
        if hist is not None and hist[g] is not None:
            dens, err, edges = hist[g]
            centres = 0.5 * (edges[1:] + edges[:-1])
            top.errorbar(centres, dens, err, fmt="o", ms=2, color=REFERENCE, lw=0.7, label="reference")
            model_at = np.interp(centres, un, total[g])
            grid[1, g].errorbar(centres, dens / model_at, err / model_at, fmt="o", ms=2, color=REFERENCE, lw=0.7)
            grid[1, g].axhline(1.0, color=MODEL, lw=0.8)
            grid[1, g].set_ylim(0.8, 1.2)
        elif hist is not None:
            grid[1, g].text(0.5, 0.5, "no reference events", ha="center", va="center", transform=grid[1, g].transAxes)
        bottom = grid[-1, g]
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.plot(un, total[g] / total[0], color=MODEL, lw=1.2)
        bottom.axhline(1.0, color="0.5", lw=0.6)
        bottom.set_xlabel(f"latent {names[column]}")
    grid[0, 0].set_ylabel("p(u | θ)")
    if hist is not None:
        grid[1, 0].set_ylabel("ref./model", fontsize="small")
    grid[-1, 0].set_ylabel("p(u|θ)/p(u|θ₀)", fontsize="small")
    grid[0, 0].legend(fontsize="x-small")
    return fig


# --------------------------------------------------------------------------- training history


def plot_training_history(history, *, axes=None):
    """Training and validation loss (left) and learning rate (right) per network and epoch.

    The validation loss is solid, the training loss dashed, the kept (best) epoch a dot.

    Arguments:
        history: a :class:`~gmmpyro.TrainingHistory` (``model.history``).
        axes: two axes; a new figure if ``None``.

    Returns:
        The matplotlib ``Figure``.
    """
    if history is None or not history.val_loss:
        raise ValueError("no training history to plot (model.history is None or empty)")
    if axes is None:
        fig, (ax_loss, ax_lr) = new_panels(1, 2, figsize=(10, 3.8), layout="constrained")
    else:
        fig, (ax_loss, ax_lr) = given_axes(axes, 2, "plot_training_history")
    epochs = np.arange(history.n_epochs)
    val, train, lr = (np.asarray(a, dtype=float) for a in (history.val_loss, history.train_loss, history.lr))
    for p, name in enumerate(history.names):
        colour = f"C{p % 10}"
        ax_loss.plot(epochs, val[:, p], color=colour, label=name)
        ax_loss.plot(epochs, train[:, p], color=colour, ls="--", lw=0.8)
        if p < len(history.best_epoch):
            b = history.best_epoch[p]
            if 0 <= b < len(epochs) and np.isfinite(val[b, p]):
                ax_loss.plot(b, val[b, p], "o", color=colour, ms=4)
        if np.isfinite(lr[:, p]).any():
            ax_lr.plot(epochs, lr[:, p], color=colour, label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (nats/event, latent)")
    ax_loss.set_title("validation (solid), training (dashed), kept epoch (dot)", fontsize="small")
    ax_loss.legend(fontsize="small")
    if (lr[np.isfinite(lr)] > 0).any():
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    return fig
