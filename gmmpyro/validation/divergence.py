"""The KL gap between a model and a known true density: :func:`kl_gap`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._results import Result, Table
from ._helpers import fmt, log_prob_function

__all__ = ["KLGap", "kl_gap"]

_MAX_POINTS = 64  # per-point breakdown only for a grid of parameter points, not for continuous θ


@dataclass(frozen=True, repr=False)
class KLGap(Result):
    """The KL gap of a model to the true density, made by :func:`kl_gap`.

    Attributes:
        value: ``KL(p_true ‖ p_model)`` estimated as the mean gap, nats/event (``inf`` if the
            model gives zero density to an event).
        stderr: its Monte-Carlo standard error, ``std(gap)/√N``.
        n_events: number of events ``N``.
        n_infinite: events with ``log p_model = -inf``.
        params: parameter names (``()`` if unknown).
        points: the distinct parameter points, shape ``(P, k)`` (``P = 0`` when there are more
            than 64, i.e. θ is continuous).
        per_point, per_point_stderr, per_point_n: the gap at each point, its error and event count.
    """

    value: float
    stderr: float
    n_events: int
    n_infinite: int
    params: tuple[str, ...]
    points: np.ndarray
    per_point: np.ndarray
    per_point_stderr: np.ndarray
    per_point_n: np.ndarray

    _arrays = ("points", "per_point", "per_point_stderr", "per_point_n")

    def summary(self) -> dict:
        """Headline numbers: the gap, its error, the worst point."""
        out = {"kl_gap": self.value, "stderr": self.stderr, "n_events": self.n_events}
        if len(self.per_point):
            worst = int(np.argmax(self.per_point))
            out["worst_point"] = dict(zip(self._names(), self.points[worst].tolist(), strict=True))
            out["worst_gap"] = float(self.per_point[worst])
        return out

    def _names(self) -> list[str]:
        k = self.points.shape[1] if self.points.ndim == 2 else 0
        return list(self.params) if len(self.params) == k else [f"θ{i}" for i in range(k)]

    def _table(self) -> Table:
        head = f"KLGap: {fmt(self.value)} ± {fmt(self.stderr, 2)} nats/event over {self.n_events} events"
        rows = []
        if self.n_infinite:
            rows.append(("zero model density", f"{self.n_infinite} event(s)"))
        names = self._names()
        for p, g, e, n in zip(self.points, self.per_point, self.per_point_stderr, self.per_point_n, strict=True):
            label = ", ".join(f"{a}={b:.3g}" for a, b in zip(names, p, strict=True))
            rows.append((label, f"{fmt(g)} ± {fmt(e, 2)}  ({int(n)} events)"))
        return Table(head, rows)


def _evaluate(fn, x: torch.Tensor, theta: torch.Tensor, chunk_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk_size):
            th = theta if theta.dim() == 1 else theta[start : start + chunk_size]
            out.append(torch.as_tensor(fn(x[start : start + chunk_size], th)).detach().cpu().double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def kl_gap(
    model,
    reference_log_prob,
    x,
    theta,
    *,
    params: Sequence[str] | None = None,
    chunk_size: int = 65_536,
) -> KLGap:
    r"""KL divergence from the true density to the model, per event, from events of the truth.

    .. math::
        \mathrm{KL}(p\,\|\,p_φ) = \mathbb{E}_{x \sim p(\cdot|θ)}\big[\ln p(x|θ) - \ln p_φ(x|θ)\big]
        \approx \frac1N \sum_n \big[\ln p(x_n|θ_n) - \ln p_φ(x_n|θ_n)\big]

    averaged over the parameter points of the events. It is ``≥ 0`` and ``0`` only for a perfect
    model; ``2·N·KL`` is the expected excess of ``-2 ln L`` for ``N`` observed events. Unlike a
    classifier test, it needs the true density (e.g. :class:`~gmmpyro.toy.ToyModel`).

    Arguments:
        model: the model: an object with ``log_prob(x, theta)`` (e.g. a
            :class:`~gmmpyro.DensityModel`) or such a callable.
        reference_log_prob: the true density, same forms.
        x: events **drawn from the true density**, shape ``(N, d)``.
        theta: their parameters, shape ``(N, k)``, or ``(k,)`` for all events.
        params: parameter names for the per-point table (default: ``model.params`` if present).
        chunk_size: events per call of ``log_prob``.

    Returns:
        A :class:`KLGap`.

    Raises:
        ValueError: shapes disagree, or the true density is zero at an event (so ``x`` was
            not drawn from it).

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> toy = ToyModel()
        >>> x = toy.sample(1000, [0.5, 0.0], seed=0)  # N d
        >>> kl_gap(toy, toy, x, torch.tensor([0.5, 0.0])).value
        0.0
    """
    model_fn = log_prob_function(model, "model")
    ref_fn = log_prob_function(reference_log_prob, "reference_log_prob")
    x = torch.as_tensor(x, dtype=torch.float64)
    theta = torch.as_tensor(theta, dtype=torch.float64)
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, d) with N >= 1, got {tuple(x.shape)}")
    if theta.dim() not in (1, 2) or (theta.dim() == 2 and theta.shape[0] != x.shape[0]):
        raise ValueError(f"theta must have shape ({x.shape[0]}, k) or (k,), got {tuple(theta.shape)}")
    if params is None:
        params = getattr(model, "params", None) or getattr(reference_log_prob, "params", None) or ()
    lp_ref = _evaluate(ref_fn, x, theta, chunk_size)
    lp_model = _evaluate(model_fn, x, theta, chunk_size)
    if lp_ref.shape != (x.shape[0],) or lp_model.shape != (x.shape[0],):
        raise ValueError(
            f"log_prob must return one value per event ({x.shape[0]},), "
            f"got {tuple(lp_ref.shape)} (reference) "
            f"and {tuple(lp_model.shape)} (model)"
        )
    bad = ~torch.isfinite(lp_ref)
    if bad.any():
        raise ValueError(
            f"the reference density is zero or not finite at {int(bad.sum())} event(s): x must be drawn from it"
        )
    n_inf = int((lp_model == -math.inf).sum())
    if torch.isnan(lp_model).any():
        raise ValueError("the model's log_prob returned NaN")
    gap = (lp_ref - lp_model).numpy()  # N

    def mean_and_error(g: np.ndarray) -> tuple[float, float]:
        if np.isinf(g).any():
            return math.inf, math.nan
        return float(g.mean()), float(g.std(ddof=1) / math.sqrt(g.size)) if g.size > 1 else math.nan

    value, stderr = mean_and_error(gap)
    theta_np = theta.expand(x.shape[0], -1).numpy()
    points, inverse = np.unique(theta_np, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(points) > _MAX_POINTS:
        points = np.zeros((0, theta_np.shape[1]))
        per = []
    else:
        per = [(*mean_and_error(gap[inverse == j]), int((inverse == j).sum())) for j in range(len(points))]
    return KLGap(
        value=value,
        stderr=stderr,
        n_events=int(x.shape[0]),
        n_infinite=n_inf,
        params=tuple(params),
        points=points,
        per_point=np.array([p[0] for p in per], dtype=float),
        per_point_stderr=np.array([p[1] for p in per], dtype=float),
        per_point_n=np.array([p[2] for p in per], dtype=int),
    )
