"""Log-density and sampling of (optionally truncated) one-dimensional Gaussian mixtures."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["component_log_prob", "log_normal_mass", "mixture_at_points", "mixture_log_prob", "sample_mixture"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# a sum of shares below this (its best term ~50 nats under the bound) may have lost the dropped terms
_SMALLEST_TOTAL = 2.0**-70
_FAR_TAIL = -8.0  # below this, Φ nears float32's smallest normal numbers: use log Φ instead
_SQRT_HALF = math.sqrt(0.5)
_LOG2_E = 1.0 / math.log(2.0)


def _limit_bits(dtype: torch.dtype) -> float:
    """An exponent ``L`` (in bits) for ``dtype``: ``2^±L`` are normal, sums of a thousand ``2^L`` finite.

    float32: 115 (``e^±80``), float64: 921; a whole number, so that ``2^L`` is exact.
    """
    return float(math.floor(0.9 * math.log2(torch.finfo(dtype).max)))


def log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Φ(b) - Φ(a))`` for ``a < b``, accurate far in either tail.

    The interval is first reflected onto the side where ``Φ`` is small. Intervals that reach
    above ``-8`` use ``log(Φ(b) - Φ(a))`` with ``Φ(x) = erfc(-x/√2)/2`` (accurate in the lower
    tail, and a tenth of the cost of ``log Φ``); the rest, far in the tail, use
    ``log Φ(b) + log1p(-Φ(a)/Φ(b))`` in log space. On the CPU only those elements go
    through ``log Φ``.

    Example:
        >>> round(float(log_normal_mass(torch.tensor(40.0, dtype=torch.float64), torch.tensor(41.0))), 3)
        -804.608
        >>> round(float(log_normal_mass(torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0))), 6)
        -0.381715
    """
    a, b = torch.broadcast_tensors(a, b)
    if a.dim() == 0:
        return log_normal_mass(a.reshape(1), b.reshape(1)).reshape(())
    if a.device.type == "cpu" and a.numel() and float(a.detach().max()) <= 0 and float(b.detach().min()) >= _FAR_TAIL:
        return _log_mass_near(a, b)  # the usual case (no interval to reflect, none far): half the operations
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)  # lo < hi, lo <= 0
    if lo.device.type != "cpu":  # elementwise work is cheap there, and a data-dependent subset would synchronise
        return _log_mass_branch_free(lo, hi)
    far = hi < _FAR_TAIL
    out = _log_mass_near(*_near_stand_ins(lo, hi, far))
    if bool(far.any()):
        out = out.index_put((far,), _log_mass_far(lo[far], hi[far]))
    return out


def _near_stand_ins(lo: torch.Tensor, hi: torch.Tensor, far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # the far elements get harmless stand-ins, so that no NaN gradient leaks through where()
    return torch.where(far, -torch.ones_like(lo), lo), torch.where(far, torch.zeros_like(hi), hi)


def _log_mass_branch_free(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``log(Φ(hi) - Φ(lo))`` of reflected intervals (``lo <= 0``), both formulas computed everywhere."""
    far = hi < _FAR_TAIL
    return torch.where(far, _log_mass_far(lo, hi), _log_mass_near(*_near_stand_ins(lo, hi, far)))


def _log_mass_near(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    # Φ(x) = erfc(-x/√2)/2: accurate for lo <= 0, hi >= -8
    return torch.log(0.5 * (torch.erfc(-_SQRT_HALF * hi) - torch.erfc(-_SQRT_HALF * lo)))


def _log_mass_far(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    # Φ(lo)/Φ(hi) < e^-8000 below hi - 1000: the clamp changes nothing, but keeps log Φ(lo) and its gradient finite
    lo = torch.maximum(lo, hi - 1e3)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + torch.log1p(-torch.exp(torch.special.log_ndtr(lo) - log_hi))


def mixture_log_prob(
    u: torch.Tensor,
    log_weights: torch.Tensor,
    means: torch.Tensor,
    widths: torch.Tensor,
    bounds: tuple[float, float] | None = None,
    truncated: torch.Tensor | None = None,
) -> torch.Tensor:
    """``log Σ_g w_g N(u; μ_g, σ_g) / Z_g`` with ``Z_g`` the mass inside ``bounds`` (1 if ``None``).

    Arguments:
        u: points, shape ``(*)``.
        log_weights, means, widths: mixture parameters, shape ``(*, N_G)`` (broadcast with ``u``).
        bounds: truncation interval, or ``None`` for an untruncated mixture.
        truncated: with ``bounds``, a boolean mask broadcast against ``(*, N_G)``: only the
            mixtures where it is ``True`` are truncated (``None``: all of them).

    Returns:
        Shape ``(*)``.

    Example:
        >>> lp = mixture_log_prob(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1))
        >>> round(float(lp), 4)
        -0.9189
    """
    return _logsumexp(log_weights + component_log_prob(u, means, widths, bounds, truncated))


_NEGLIGIBLE = -80.0  # e^-80 < 2e-35: far below the precision of any sum of terms up to 1


def _logsumexp(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.logsumexp(values, dim)``, with terms below ``e^-80`` of the largest set to ``e^-80``.

    The same value (gradients to rounding), but faster on the CPU (1.6× with its gradient for
    20 components of 1 600 mixtures spread over hundreds of nats): ``exp`` of arguments below
    about -87 (far components of a mixture, most of them) leaves the vectorised path.
    """
    return _floored_logsumexp(values, dim)[0].squeeze(dim)


def _floored_logsumexp(values: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
    """:func:`_logsumexp` with ``dim`` kept, and its parts: ``(value, shares, total, finite)``.

    ``shares`` are the floored ``e^{v - max v}``, ``total`` their sum and ``finite`` whether the
    largest term is finite (where it is not, the value is that term).
    """
    largest = values.detach().amax(dim, keepdim=True)
    finite = torch.isfinite(largest)
    shift = torch.where(finite, largest, torch.zeros_like(largest))
    shares = torch.exp((values - shift).clamp_min(_NEGLIGIBLE))
    total = shares.sum(dim, keepdim=True)
    return torch.where(finite, shift + torch.log(total), largest), shares, total, finite


def mixture_at_points(
    u: torch.Tensor,
    log_weights: torch.Tensor,
    means: torch.Tensor,
    widths: torch.Tensor,
    bounds: tuple[float, float] | None = None,
) -> torch.Tensor:
    """:func:`mixture_log_prob` of ``B`` mixtures, each at the same ``N`` points: ``(B, N)``.

    The same values (to rounding), for mixtures that do not depend on the point, as the first
    factor's at one ``θ``: the normalisation is computed once per mixture and the gradient by
    hand in one pass over the ``B × N_G × N`` terms, instead of a few dozen autograd steps.

    Arguments:
        u: the points, shape ``(N,)``.
        log_weights, means, widths: shape ``(B, N_G)``.
        bounds: truncation interval, or ``None``.

    Example:
        >>> w, mu, sigma = torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1)  # B N_G
        >>> at_points = mixture_at_points(torch.zeros(3), w, mu, sigma)  # B N
        >>> torch.allclose(at_points, mixture_log_prob(torch.zeros(1, 3), w, mu, sigma))
        True
    """
    peak = component_log_prob(means, means.unsqueeze(-1), widths.unsqueeze(-1), bounds).squeeze(-1)  # at z = 0
    return _MixtureAtPoints.apply(log_weights + peak, means, widths, u)


class _MixtureAtPoints(torch.autograd.Function):
    """``L_n = log Σ_g exp(a_g - z_gn² / 2)``, ``z_gn = (u_n - μ_g) / σ_g``, with its gradient by hand.

    ``a, μ, σ (B, N_G)`` and ``u (N,)`` → ``(B, N)``; terms below ``e^-80`` of the largest (or of
    a bound of it, :meth:`parts`) do not count. With ``r_gn`` the components' shares of ``e^{L_n}``:
    ``∂L_n/∂a_g = r_gn``, ``∂L_n/∂μ_g = r_gn z_gn / σ_g``, ``∂L_n/∂σ_g = r_gn z_gn² / σ_g``,
    ``∂L_n/∂u_n = -Σ_g r_gn z_gn / σ_g``.
    Second derivatives (a fit's Hessian) go through autograd of the same expression.
    """

    @staticmethod
    def standardised(a, means, widths, u) -> tuple[torch.Tensor, torch.Tensor]:
        """``z (B, N_G, N)`` and the terms ``a_g - z_gn² / 2`` (same shape)."""
        z = (u - means.unsqueeze(-1)) / widths.unsqueeze(-1)
        return z, a.unsqueeze(-1) - 0.5 * z * z

    @staticmethod
    def expression(a, means, widths, u):
        return _logsumexp(_MixtureAtPoints.standardised(a, means, widths, u)[1], 1)

    @staticmethod
    def parts(a, means, widths, u) -> tuple[torch.Tensor, ...]:
        """``(z, value, shares, total, finite)``: ``z (B, N_G, N)`` and :func:`_floored_logsumexp`'s parts.

        The shares are first taken relative to ``max_g a_g``, which bounds every term, so no
        search for the largest term is needed, computed as ``exp2`` of terms in bits (on the CPU
        twice as fast as ``exp``), and those below ``2^-L`` of the bound (:func:`_limit_bits`:
        ``e^-80`` in float32) set to 0 (their ``exp`` would leave the vectorised path; a floor
        instead of 0 would enter the gradient times ``z²``). Where any event's sum then falls
        below ``2^-70`` (its best term ~50 nats under the bound, where the dropped terms might
        matter), the whole batch is computed again relative to each event's largest term; on
        other devices than the CPU always so.
        """
        z = (u - means.unsqueeze(-1)) / widths.unsqueeze(-1)  # B N_G N
        if z.device.type == "cpu":  # elsewhere no test of the sums (a synchronisation); exp is cheap there
            bound = a.detach().amax(-1, keepdim=True)  # B 1
            bits = torch.addcmul(((a - bound) * _LOG2_E).unsqueeze(-1), z, z, value=-0.5 * _LOG2_E)  # B N_G N
            shares = F.threshold_(bits, -_limit_bits(bits.dtype), -math.inf).exp2_()  # negligible terms exactly 0
            total = shares.sum(1, keepdim=True)  # B 1 N
            if bool((total >= _SMALLEST_TOTAL).all()):  # False also where the bound is not finite (NaN shares)
                finite = torch.ones_like(total, dtype=torch.bool)
                return z, bound.unsqueeze(-1) + torch.log(total), shares, total, finite
        return z, *_floored_logsumexp(a.unsqueeze(-1) - 0.5 * z * z, 1)

    @staticmethod
    def forward(ctx, a, means, widths, u):
        z, value, shares, total, finite = _MixtureAtPoints.parts(a, means, widths, u)  # B N_G N; B 1 N
        ctx.save_for_backward(a, means, widths, u, z, shares, total, finite)
        return value.squeeze(1)

    @staticmethod
    def backward(ctx, grad):
        a, means, widths, u, z, shares, total, finite = ctx.saved_tensors
        if torch.is_grad_enabled():  # the backward pass records a graph: a second derivative follows
            return _autograd_backward(_MixtureAtPoints.expression, (a, means, widths, u), ctx.needs_input_grad, grad)
        grad_a, grad_means, grad_widths, weighted_z = _MixtureAtPoints.gradients(grad, widths, z, shares, total, finite)
        grad_u = -(weighted_z / widths.unsqueeze(-1)).sum((0, 1)) if ctx.needs_input_grad[3] else None
        return grad_a, grad_means, grad_widths, grad_u

    @staticmethod
    def gradients(grad, widths, z, shares, total, finite) -> tuple[torch.Tensor, ...]:
        """``grad (B, N)`` → ``(∂/∂a, ∂/∂μ, ∂/∂σ)`` each ``(B, N_G)``, and ``grad_n r_gn z_gn (B, N_G, N)``.

        From the forward pass's ``z``, ``shares``, ``total`` and ``finite`` (:func:`_floored_logsumexp`).
        """
        weighted = shares * torch.where(finite, grad.unsqueeze(1) / total, 0.0)  # grad_n r_gn; 0 where L_n = -inf
        weighted_z = weighted * z
        return weighted.sum(-1), weighted_z.sum(-1) / widths, (weighted_z * z).sum(-1) / widths, weighted_z


def _autograd_backward(expression, inputs, needs_input_grad, grad: torch.Tensor) -> tuple:
    """``grad · ∂expression(*inputs)/∂inputs`` by autograd, recording a graph: a hand-written backward's twin.

    A hand-written gradient is computed from tensors saved without their graph, so a backward
    pass that must itself be differentiable (``create_graph=True``, as for a fit's Hessian)
    recomputes the expression from the saved inputs and differentiates that. Each input enters
    through a fresh view, so that the derivatives are partial ones even where one input was
    computed from another. ``None`` for the inputs whose gradient is not needed.
    """
    views = [x.view_as(x) if need else x for x, need in zip(inputs, needs_input_grad, strict=False)]
    wanted = [v for v, need in zip(views, needs_input_grad, strict=False) if need]
    found = iter(torch.autograd.grad(expression(*views), wanted, grad, create_graph=True))
    return tuple(next(found) if need else None for need in needs_input_grad)


def component_log_prob(
    u: torch.Tensor,
    means: torch.Tensor,
    widths: torch.Tensor,
    bounds: tuple[float, float] | None = None,
    truncated: torch.Tensor | None = None,
) -> torch.Tensor:
    """``log N(u; μ_g, σ_g) / Z_g`` of each component: :func:`mixture_log_prob` before the weights.

    Arguments as :func:`mixture_log_prob`; returns ``broadcast(*, N_G)``.

    Example:
        >>> lp = component_log_prob(torch.zeros(1), torch.zeros(1, 2), torch.ones(1, 2), (-1.0, 1.0))
        >>> [round(v, 4) for v in lp[0].tolist()]  # log(φ(0) / 0.6827)
        [-0.5372, -0.5372]
    """
    u = u[..., None]
    z = (u - means) / widths
    log_component = -0.5 * z * z - torch.log(widths) - _LOG_SQRT_2PI
    if bounds is not None:
        log_component = _truncate(log_component, u, means, widths, bounds, truncated)
    return log_component


def _truncate(log_component, u, means, widths, bounds, truncated) -> torch.Tensor:
    """``log_component - log Z`` for the truncated components; wide ones by their uniform limit.

    A component much wider than the interval (``(hi - lo) / σ`` below ``(8 ε)^⅓``, as far
    outside the training range) would lose ``Z`` to cancellation and give ``+inf``; there the
    density is ``exp(-m s) / ∫`` over the interval to a relative ``(hi - lo)² / 8σ²``.
    """
    lo, hi = bounds
    a, b = (lo - means) / widths, (hi - means) / widths
    wide = _too_wide(widths, bounds)
    if truncated is not None:
        wide = wide & truncated
    if widths.device.type == "cpu" and not bool(wide.any()):  # the usual case: no wide component
        wide = None
    else:  # the wide elements get stand-ins, so that no NaN gradient leaks through where()
        a, b = torch.where(wide, -torch.ones_like(a), a), torch.where(wide, torch.ones_like(b), b)
    log_mass = log_normal_mass(a, b)
    if truncated is not None:
        log_mass = torch.where(truncated, log_mass, torch.zeros_like(log_mass))
    out = log_component - log_mass
    if wide is None:
        return out
    return torch.where(wide, _log_wide_truncated(u, means, widths, lo, hi), out)


def _too_wide(widths: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Whether each component is too wide for its mass inside ``bounds`` (``(hi - lo) / σ`` below ``(8 ε)^⅓``)."""
    return widths > _widest(bounds, widths.dtype)


def _widest(bounds: tuple[float, float], dtype: torch.dtype) -> float:
    """The widest component whose mass inside ``bounds`` keeps its precision: ``(hi - lo) / (8 ε)^⅓``."""
    lo, hi = bounds
    return (hi - lo) / (8 * torch.finfo(dtype).eps) ** (1 / 3)


def _log_wide_truncated(u, means, widths, lo: float, hi: float) -> torch.Tensor:
    """``log N(u; μ, σ) / Z`` for ``σ ≫ hi - lo``: ``(m² - z²)/2 - log(hi - lo) - log sinhc(m δ / 2)``.

    ``m`` is the interval's midpoint and ``δ = (hi - lo)/σ``, both in units of ``σ``; exact in
    the limit ``σ → ∞`` (uniform on the interval), finite for ``σ = inf``.
    """
    mid, span = 0.5 * (lo + hi), hi - lo
    quadratic = ((mid - u) / widths) * ((mid + u - 2 * means) / widths)  # m² - z²
    y = ((mid - means) / widths) * (span / (2 * widths))  # m δ / 2
    return 0.5 * quadratic - math.log(span) - _log_sinhc(y)


def _log_sinhc(y: torch.Tensor) -> torch.Tensor:
    """``log(sinh(y) / y)``, without overflow for large ``|y|``."""
    y = y.abs()
    small = y < 1e-2
    big = torch.where(small, torch.ones_like(y), y)
    return torch.where(small, y * y / 6, big + torch.log(-torch.expm1(-2 * big)) - torch.log(2 * big))


def sample_mixture(
    log_weights: torch.Tensor,
    means: torch.Tensor,
    widths: torch.Tensor,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One draw per mixture, truncated to ``bounds`` by inverse-CDF sampling.

    Arguments:
        log_weights, means, widths: shape ``(*, N_G)``.
        bounds: truncation interval or ``None``.
        generator: random stream (on the tensors' device).

    Returns:
        Shape ``(*)``, inside ``bounds`` when given.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> s = sample_mixture(torch.zeros(1000, 1), torch.full((1000, 1), 9.0), torch.ones(1000, 1), (-5, 5), g)
        >>> bool((s <= 5).all() and (s > 2).all())
        True
    """
    batch = log_weights.shape[:-1]
    flat = log_weights.reshape(-1, log_weights.shape[-1])
    index = torch.multinomial(flat.exp(), 1, generator=generator).reshape(*batch, 1)
    mu = means.gather(-1, index).squeeze(-1)
    sigma = widths.gather(-1, index).squeeze(-1)
    r = torch.rand(batch, generator=generator, dtype=mu.dtype, device=mu.device)
    if bounds is None:
        return mu + sigma * torch.special.ndtri(r.clamp(1e-12, 1 - 1e-12))
    lo, hi = bounds
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    # sample on the side of the mean where the CDF is small, so Φ(a)…Φ(b) keeps its precision
    flip = a > 0
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
    z = torch.special.ndtri(
        (cdf_a + r * (cdf_b - cdf_a)).clamp(1e-300 if mu.dtype == torch.float64 else 1e-38)
    )
    z = torch.where(b < _FAR_TAIL, _far_tail_quantile(a, b, r), z)
    z = torch.minimum(torch.maximum(z, a), b)
    z = torch.where(flip, -z, z)
    return (mu + sigma * z).clamp(lo, hi)


def _far_tail_quantile(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The ``r``-quantile of the standard normal truncated to ``[a, b]``, accurate for ``b`` far in the lower tail.

    There ``Φ(a)`` and ``Φ(b)`` lose their precision, then underflow (a component centred ~40
    widths outside the range would put all its draws exactly on the bound). In log space:
    ``log Φ(z) = log(Φ(a) + r (Φ(b) - Φ(a)))``, solved by Newton's method on ``log Φ`` from the
    tail's leading order ``z² = b² - 2 log(Φ(z)/Φ(b))``; elements with ``b ≥ -8`` get a
    stand-in interval (their value is not used).
    """
    far = b < _FAR_TAIL
    b = torch.where(far, b, torch.full_like(b, 2 * _FAR_TAIL))
    a = torch.where(far, torch.minimum(a, b), torch.full_like(a, 4 * _FAR_TAIL))
    log_b = torch.special.log_ndtr(b)
    excess = torch.log(r + (1 - r) * torch.exp(torch.special.log_ndtr(a) - log_b))  # log Φ(z) - log Φ(b) <= 0
    target = log_b + excess
    z = -torch.sqrt(b * b - 2 * excess)
    for _ in range(4):  # quadratic convergence from a start within O(1/b²)
        log_cdf = torch.special.log_ndtr(z)
        z = z - (log_cdf - target) * torch.exp(log_cdf + 0.5 * z * z + _LOG_SQRT_2PI)
    return z
