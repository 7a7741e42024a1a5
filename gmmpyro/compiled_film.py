"""The ``"film"`` design's log density and its per-event θ-Jacobian as one expression for ``torch.compile``.

Each later factor's outputs depend on θ only through the scale and shift ``(γ, β)`` of its
modulated layer, and each event's outputs only through its own row of that layer, so one
reverse pass with unit weights gives every event's gradient with respect to its
pre-activation ``g_n (H,)``, and then its θ-Jacobian

.. math:: J_n = \\sum_i (g_{in} ⊙ h_{in})\\, \\frac{∂γ_i}{∂θ} + g_{in}\\, \\frac{∂β_i}{∂θ},

with ``∂(γ, β)/∂θ`` pushed forward through the small θ networks. The first factor depends on θ
alone and is scored as in :mod:`gmmpyro.compiled_amplitudes`. What the expression does not
cover (a truncation interval far in the tail, a component too wide for its interval) is
reported in a flag and left to the eager path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .compiled_amplitudes import (
    AmplitudeKernels,
    _at_first_events,
    _edge_densities,
    _theta_features,
    _truncation,
    _value_row,
)
from .mixture import _LOG_SQRT_2PI, _NEGLIGIBLE

__all__ = ["FilmInputs", "FilmKernels", "film_log_prob"]


class FilmInputs(NamedTuple):
    """What the compiled expression reads of :class:`~gmmpyro.film.StackedFilm`."""

    weights: list[torch.Tensor]  # the θ networks' layers: d in out, the last out = 2H
    biases: list[torch.Tensor]  # d 1 out
    slope: float
    first_constant: torch.Tensor  # H: the first factor's event features
    head_weights: torch.Tensor  # d 3N_G H
    head_biases: torch.Tensor  # d 3N_G 1
    mean_offset: torch.Tensor  # N_G
    log_width0: float
    scales: tuple[float, float, float]  # s_f, s_μ, s_σ
    epsilon: float
    bounds: tuple[float, float] | None  # the first factor's truncation
    widest: float
    u_first: torch.Tensor  # N
    limit: float
    events: torch.Tensor | None  # d-1 H N: the later factors' event features; None for d = 1
    u_later: torch.Tensor | None  # d-1 1 1 N
    truncated: torch.Tensor | None  # d-1 1 1 1, bool
    latent_range: tuple[float, float]


def _exp_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``e^x``, exactly 0 below ``e^-80``: subnormal numbers would slow every later product tenfold."""
    return torch.where(x <= _NEGLIGIBLE, 0.0, torch.exp(x))


def _first_factor(rows: torch.Tensor, inputs: FilmInputs, far_tails: bool):
    """The first factor from its θ rows ``(B, 1+k, 2H)``: ``(value (B, N), ∂value/∂θ (B, k, N) or None, ok)``."""
    gamma, beta = rows.chunk(2, -1)
    pre = (gamma + _value_row(rows.shape[1], rows)) * inputs.first_constant + beta  # (1 + γ) h + β, 1 in the value
    pre = torch.where(pre[:, :1] > 0, pre, inputs.slope * pre)
    raw_rows = pre @ inputs.head_weights[0].T  # B 1+k 3N_G
    raw = raw_rows[:, 0] + inputs.head_biases[0, :, 0]
    return _at_first_events(raw, raw_rows[:, 1:] if rows.shape[1] > 1 else None, inputs, far_tails)


def _later_factors(rows: torch.Tensor, inputs: FilmInputs, far_tails: bool):
    """The later factors summed, from their θ rows ``(d-1, B, 1+k, 2H)``: ``(value (B, N), J (B, k, N) or None, ok)``.

    Laid out with the events innermost, so that the sums over components and the elementwise
    work run over contiguous memory.
    """
    batch, n_rows = rows.shape[1:3]
    s_f, s_mu, s_sigma = inputs.scales
    n_gauss = inputs.mean_offset.shape[0]
    events = inputs.events.unsqueeze(2)  # d-1 H 1 N
    gamma, beta = rows.permute(0, 3, 1, 2).chunk(2, 1)  # d-1 H B 1+k
    pre = events * (1.0 + gamma[..., :1]) + beta[..., :1]  # d-1 H B N
    positive = pre > 0
    hidden = torch.where(positive, pre, inputs.slope * pre).flatten(2)  # d-1 H B·N
    raw = torch.baddbmm(inputs.head_biases[1:], inputs.head_weights[1:], hidden).unflatten(2, (batch, -1))
    raw_logits, raw_means, raw_widths = raw.split(n_gauss, 1)  # d-1 N_G B N
    logits = s_f * raw_logits
    logits = logits - logits.amax(1, keepdim=True)
    log_weights = logits - torch.log(_exp_or_zero(logits).sum(1, keepdim=True))
    means = s_mu * raw_means + inputs.mean_offset.view(-1, 1, 1)
    widths = torch.exp(s_sigma * raw_widths + inputs.log_width0) + inputs.epsilon  # d-1 N_G B N
    z = (inputs.u_later - means) / widths
    log_terms = log_weights - 0.5 * z * z - torch.log(widths) - _LOG_SQRT_2PI
    truncated = inputs.truncated
    alpha, beta_, log_mass, fine = _truncation(means, widths, inputs.latent_range, inputs.widest, far_tails)
    log_mass = torch.where(truncated, log_mass, 0.0)
    ok = (fine | ~truncated).all()
    log_terms = log_terms - log_mass
    largest = log_terms.amax(1, keepdim=True)
    shares = _exp_or_zero(log_terms - largest)
    total = shares.sum(1, keepdim=True)
    value = (largest + torch.log(total)).squeeze(1).sum(0)  # B N
    if n_rows == 1:
        return value, None, ok
    shares = shares / total  # responsibilities
    p_alpha, p_beta = (torch.where(truncated, p, 0.0) for p in _edge_densities(alpha, beta_, log_mass))
    per_width = shares / widths
    d_logits = s_f * (shares - _exp_or_zero(log_weights))
    d_means = (s_mu * per_width) * (z - (p_alpha - p_beta))
    d_widths = (s_sigma * per_width * (widths - inputs.epsilon)) * (z * z - 1.0 - (alpha * p_alpha - beta_ * p_beta))
    d_raw = torch.cat([d_logits, d_means, d_widths], 1).flatten(2)  # d-1 3N_G B·N
    d_hidden = torch.bmm(inputs.head_weights[1:].transpose(1, 2), d_raw).view(pre.shape)  # d-1 H B N
    d_pre = torch.where(positive, d_hidden, inputs.slope * d_hidden)
    # as a sum rather than products: k is small, and the products' operands would need copies
    per_theta = events.unsqueeze(-1) * gamma[..., 1:].unsqueeze(3) + beta[..., 1:].unsqueeze(3)  # d-1 H B N k
    jacobian = (d_pre.unsqueeze(-1) * per_theta).sum((0, 1))  # B N k
    return value, jacobian.transpose(1, 2), ok


def film_log_prob(theta_scaled: torch.Tensor, inputs: FilmInputs, jacobian: bool, far_tails: bool = False):
    """Summed latent log densities ``θ (B, k)`` → ``(value (B, N), J (B, N, k) or None, ok)``.

    ``ok`` (a 0-dim bool) is False where the expression does not hold and the eager path must
    take over: a truncation interval far in the tail (unless ``far_tails``), a component too
    wide for its interval, a first-factor sum below ``2^-70`` of its bound.
    """
    rows = _theta_features(theta_scaled, inputs, jacobian)  # d B 1+k 2H
    value, d_value, ok = _first_factor(rows[0], inputs, far_tails)
    if inputs.events is not None:
        later, d_later, later_ok = _later_factors(rows[1:], inputs, far_tails)
        value, ok = value + later, ok & later_ok
        if d_value is not None:
            d_value = d_value + d_later
    return value, None if d_value is None else d_value.transpose(1, 2), ok


class FilmKernels(AmplitudeKernels):
    """:func:`film_log_prob` compiled, with and without the Jacobian (see ``AmplitudeKernels``).

    Example:
        >>> FilmKernels(dynamic=True)
        FilmKernels(dynamic=True)
    """

    expression = staticmethod(film_log_prob)
    design = "film"
