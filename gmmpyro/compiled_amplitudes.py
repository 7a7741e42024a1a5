"""The ``"amplitudes"`` design's log density and its per-event θ-Jacobian as one expression for ``torch.compile``.

:class:`~gmmpyro.lowrank.StackedAmplitudes` scores prepared events at one θ in about a hundred
small tensor operations and runs its θ-gradient by hand in about as many; at a few hundred
events their dispatch, not their arithmetic, sets the cost. Here the usual case (no truncation
interval far in the tail, no sum below precision) is written without data-dependent
branches, values and derivatives together, so that ``torch.compile`` fuses it into a few
kernels. What the expression does not cover is reported in a flag and left to the eager path.

The gradient is forward-mode in θ: the θ networks' Jacobian ``∂b/∂θ (d, B, k, R)`` is pushed
through each factor's outputs, and each event's derivative is kept,

.. math:: J_{bn} = \\frac{∂ \\log p(u_n | θ_b)}{∂θ_b} \\in \\mathbb{R}^k,

so that any upstream gradient ``g (B, N)`` gives ``Σ_n g_{bn} J_{bn}`` in one product (the
first factor's events enter as ``Σ_g r_{gn} (∂a_g + z_{gn} ∂μ_g/σ_g + z_{gn}² ∂σ_g/σ_g)``,
``r`` its responsibilities; the later factors' as ``ln 2 Σ_g (w_g c_g/Σwc - w_g/Σw) ∂l_g``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from .mixture import _FAR_TAIL, _LOG2_E, _LOG_SQRT_2PI, _SMALLEST_TOTAL, _log_mass_branch_free, _log_mass_near

__all__ = ["AmplitudeInputs", "AmplitudeKernels", "amplitude_log_prob"]


class AmplitudeInputs(NamedTuple):
    """What the compiled expression reads of :class:`~gmmpyro.lowrank.StackedAmplitudes` (shapes as there)."""

    weights: list[torch.Tensor]  # the θ networks' layers: d in out
    biases: list[torch.Tensor]  # d 1 out
    slope: float
    first_features: torch.Tensor  # R+1 3N_G
    mean_offset: torch.Tensor  # N_G
    log_width0: float
    scales: tuple[float, float, float]  # s_f, s_μ, s_σ
    epsilon: float
    bounds: tuple[float, float] | None  # the first factor's truncation
    widest: float  # widths above this lose Z to cancellation (mixture._too_wide)
    u_first: torch.Tensor  # N
    logit_features: torch.Tensor | None  # d-1 R+1 N_G·N, in bits; None for d = 1
    components: torch.Tensor | None  # d-1 1 N_G N
    log_scale: torch.Tensor | None  # d-1 1 N
    smallest: float  # a later factor's numerator below this has lost precision
    limit: float  # mixture._limit_bits of the dtype


def _theta_features(theta_scaled: torch.Tensor, inputs: AmplitudeInputs, jacobian: bool) -> torch.Tensor:
    """``θ (B, k)`` → rows ``(d, B, 1+k, R)``: the features ``b``, then (if asked) ``∂b/∂θ_1 … ∂b/∂θ_k``.

    Values and derivatives go through each layer as one product (forward mode): a leaky ReLU
    scales a value and its derivatives alike, by 1 or by its slope, as the value's sign says.
    """
    d, batch, k = inputs.weights[0].shape[0], theta_scaled.shape[0], theta_scaled.shape[-1]
    rows = theta_scaled.unsqueeze(1)  # B 1 k
    if jacobian:
        rows = torch.cat([rows, torch.eye(k, dtype=rows.dtype, device=rows.device).expand(batch, k, k)], 1)
    rows = rows.unsqueeze(0).expand(d, *rows.shape)  # d B 1+k k
    is_value = _value_row(rows.shape[2], rows)  # the bias enters the value, not its derivatives
    last = len(inputs.weights) - 1
    for j, (w, b) in enumerate(zip(inputs.weights, inputs.biases, strict=True)):
        rows = torch.matmul(rows, w.unsqueeze(1)) + b.unsqueeze(2) * is_value  # d B 1+k width
        if j < last:
            rows = torch.where(rows[:, :, :1] > 0, rows, inputs.slope * rows)
    return rows


def _value_row(n_rows: int, like: torch.Tensor) -> torch.Tensor:
    """``(1+k, 1)``: 1 in the value's row, 0 in the derivatives' rows (a constant term enters the value only)."""
    is_value = torch.zeros(n_rows, 1, dtype=like.dtype, device=like.device)
    is_value[0] = 1.0
    return is_value


def _first_factor(rows: torch.Tensor, inputs: AmplitudeInputs, far_tails: bool):
    """The first factor at the events from its feature rows ``(B, 1+k, R)``: ``(value (B, N), ∂value/∂θ or None, ok)``.

    The derivative is ``(B, k, N)``.
    """
    rank = rows.shape[-1]
    raw_rows = rows @ inputs.first_features[:rank]  # B 1+k 3N_G
    raw = raw_rows[:, 0] + inputs.first_features[rank]  # B 3N_G
    return _at_first_events(raw, raw_rows[:, 1:] if rows.shape[1] > 1 else None, inputs, far_tails)


def _truncation(means: torch.Tensor, widths: torch.Tensor, bounds: tuple[float, float], widest: float, far_tails: bool):
    """Gaussians truncated to ``bounds``: ``(α, β, log Z, fine)``, each shaped as ``means``.

    ``fine`` is False for a component too wide for the interval (``Z`` lost to cancellation)
    and, unless ``far_tails``, for an interval far in the tail. The interval is reflected onto
    the side where ``Φ`` is small, as :func:`gmmpyro.mixture.log_normal_mass` does; with
    ``far_tails`` both formulas are computed for every element (on the CPU ~0.5 ms more per
    24 000 intervals, 4.4× the near formula's time).
    """
    lo, hi = bounds
    alpha, beta = (lo - means) / widths, (hi - means) / widths
    flip = alpha > 0
    near, far = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    fine = widths <= widest
    if far_tails:
        return alpha, beta, _log_mass_branch_free(near, far), fine
    return alpha, beta, _log_mass_near(near, far), fine & (far >= _FAR_TAIL)


def _edge_densities(alpha: torch.Tensor, beta: torch.Tensor, log_mass: torch.Tensor):
    """``p_α, p_β = φ(α)/Z, φ(β)/Z``: ``-∂ log Z = -(p_α - p_β) ∂μ/σ - (α p_α - β p_β) ∂σ/σ``."""
    return (
        torch.exp(-0.5 * alpha * alpha - _LOG_SQRT_2PI - log_mass),
        torch.exp(-0.5 * beta * beta - _LOG_SQRT_2PI - log_mass),
    )


def _at_first_events(raw: torch.Tensor, d_raw: torch.Tensor | None, inputs, far_tails: bool):
    """The first factor's mixture from its outputs ``raw (B, 3N_G)`` and their θ-derivatives ``(B, k, 3N_G)``.

    Returns ``(value (B, N), ∂value/∂θ (B, k, N) or None, ok)``.
    """
    s_f, s_mu, s_sigma = inputs.scales
    raw_logits, raw_means, raw_widths = raw.chunk(3, -1)
    log_weights = torch.log_softmax(s_f * raw_logits, -1)
    means = s_mu * raw_means + inputs.mean_offset
    widths = torch.exp(s_sigma * raw_widths + inputs.log_width0) + inputs.epsilon  # B N_G
    log_peak = -torch.log(widths) - _LOG_SQRT_2PI
    ok = torch.ones((), dtype=torch.bool, device=widths.device)
    if inputs.bounds is not None:
        alpha, beta, log_mass, fine = _truncation(means, widths, inputs.bounds, inputs.widest, far_tails)
        ok = fine.all()
        log_peak = log_peak - log_mass
    a = log_weights + log_peak  # B N_G
    z = (inputs.u_first - means.unsqueeze(-1)) / widths.unsqueeze(-1)  # B N_G N
    bound = a.amax(-1, keepdim=True)  # B 1
    bits = ((a - bound) * _LOG2_E).unsqueeze(-1) - (0.5 * _LOG2_E) * z * z
    shares = torch.where(bits <= -inputs.limit, 0.0, torch.exp2(bits))  # negligible terms exactly 0
    total = shares.sum(1, keepdim=True)  # B 1 N
    ok = ok & (total >= _SMALLEST_TOTAL).all()
    value = (bound.unsqueeze(-1) + torch.log(total)).squeeze(1)  # B N
    if d_raw is None:
        return value, None, ok
    d_logits, d_means, d_widths = d_raw.chunk(3, -1)  # B k N_G
    d_logits = s_f * d_logits
    d_log_weights = d_logits - (log_weights.exp().unsqueeze(1) * d_logits).sum(-1, keepdim=True)
    d_means = s_mu * d_means / widths.unsqueeze(1)  # ∂μ/σ
    d_widths = s_sigma * (widths - inputs.epsilon).unsqueeze(1) * d_widths / widths.unsqueeze(1)  # ∂σ/σ
    d_a = d_log_weights - d_widths  # -∂ log σ
    if inputs.bounds is not None:
        p_alpha, p_beta = (p.unsqueeze(1) for p in _edge_densities(alpha, beta, log_mass))
        edge_terms = alpha.unsqueeze(1) * p_alpha - beta.unsqueeze(1) * p_beta
        d_a = d_a - (p_alpha - p_beta) * d_means - edge_terms * d_widths
    shares = shares / total  # the responsibilities r, B N_G N
    weighted = torch.cat([shares, shares * z, shares * z * z], 1)  # B 3N_G N
    jacobian = torch.bmm(torch.cat([d_a, d_means, d_widths], -1), weighted)  # B k N
    return value, jacobian, ok


def _later_factors(rows: torch.Tensor, inputs: AmplitudeInputs):
    """The later factors summed, from their feature rows ``(d-1, B, 1+k, R)``: ``(value (B, N), ∂value/∂θ, ok)``.

    The logits and their θ-derivatives come from one product, which reads the cached logit
    features once (at 10 000 events their reading is most of the cost).
    """
    n_later, batch, n_rows, rank = rows.shape
    n_gauss = inputs.components.shape[2]
    logit_features = inputs.logit_features
    out = torch.bmm(rows.flatten(1, 2), logit_features[:, :rank])  # d-1 B·(1+k) N_G·N
    out = out.view(n_later, batch, n_rows, n_gauss, -1)  # d-1 B 1+k N_G N
    logits = out[:, :, 0] + logit_features[:, rank].view(n_later, 1, n_gauss, -1)  # d-1 B N_G N, in bits
    weights = torch.exp2(logits.clamp(-inputs.limit, inputs.limit))
    products = weights * inputs.components
    numerator, denominator = products.sum(2), weights.sum(2)  # d-1 B N
    ok = ((numerator >= inputs.smallest) & (denominator < 2.0 ** (inputs.limit - 1.0))).all()
    value = (torch.log(numerator / denominator) + inputs.log_scale).sum(0)  # B N
    if n_rows == 1:
        return value, None, ok
    per_logit = math.log(2.0) * (products / numerator.unsqueeze(2) - weights / denominator.unsqueeze(2))
    jacobian = (per_logit.unsqueeze(2) * out[:, :, 1:]).sum((0, 3))  # B k N
    return value, jacobian, ok


def amplitude_log_prob(theta_scaled: torch.Tensor, inputs: AmplitudeInputs, jacobian: bool, far_tails: bool = False):
    """Summed latent log densities ``θ (B, k)`` → ``(value (B, N), J (B, N, k) or None, ok)``.

    ``ok`` (a 0-dim bool) is False where the expression does not hold and the eager path must
    take over: a truncation interval far in the tail (unless ``far_tails``), a component too
    wide for its interval, a first-factor sum below ``2^-70`` of its bound, a later factor's
    weights out of range.
    """
    rows = _theta_features(theta_scaled, inputs, jacobian)  # d B 1+k R
    value, d_value, ok = _first_factor(rows[0], inputs, far_tails)
    if inputs.logit_features is not None:
        later, d_later, later_ok = _later_factors(rows[1:], inputs)
        value, ok = value + later, ok & later_ok
        if d_value is not None:
            d_value = d_value + d_later
    return value, None if d_value is None else d_value.transpose(1, 2), ok


class AmplitudeKernels:
    """:func:`amplitude_log_prob` compiled, with and without the Jacobian; the options go to ``torch.compile``.

    On the CPU, with Inductor (the default backend) and neither ``mode`` nor ``options`` given,
    Inductor is told to store what is read more than once (measured there; other devices get
    ``torch.compile``'s defaults). Each device type compiles on its first call.

    Example:
        >>> kernels = AmplitudeKernels(dynamic=True)
        >>> sorted(kernels.options)
        ['dynamic']
    """

    expression = staticmethod(amplitude_log_prob)
    design = "amplitudes"

    def __init__(self, **options) -> None:
        self.options = options
        self._compiled: dict[str, object] = {}

    def _for_device(self, device_type: str):
        if device_type not in self._compiled:
            options = self.options
            tuned = options.get("backend", "inductor") == "inductor" and not {"mode", "options"} & options.keys()
            if device_type == "cpu" and tuned:
                # values read more than once are stored rather than recomputed in each reading loop: the
                # exponentials were computed up to three times (measured 0.36-0.41 against 0.42-0.49 ms at 400
                # events, 5.7-6.1 against 7.3-7.8 ms at 10 000)
                options = {**options, "options": {"realize_reads_threshold": 1}}
            validation = torch.distributions.Distribution._validate_args
            self._compiled[device_type] = torch.compile(self.expression, **options)
            # torch.compile's first use switches torch's distribution validation off, process-wide: undone
            torch.distributions.Distribution.set_default_validate_args(validation)
        return self._compiled[device_type]

    def __call__(self, theta_scaled: torch.Tensor, inputs: AmplitudeInputs, jacobian: bool, far_tails: bool = False):
        """:func:`amplitude_log_prob`, compiled on the first call for each shape, dtype, device and ``far_tails``."""
        compiled = self._for_device(theta_scaled.device.type)
        try:
            return compiled(theta_scaled, inputs, jacobian, far_tails)
        except Exception as error:
            if not isinstance(error, _backend_failures()):
                raise
            cause = error  # the innermost cause says what failed (dynamo wraps the backend's error)
            while (inner := cause.__cause__ or getattr(cause, "inner_exception", None)) is not None:
                cause = inner
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            raise RuntimeError(
                f"torch.compile could not compile the {self.design} kernels ({type(cause).__name__}: "
                f"{lines[0] if lines else ''}); on the CPU it needs a C++ compiler, on a GPU Triton. "
                "Load the model again to use it uncompiled."
            ) from error

    def __reduce__(self):
        # the compiled functions do not pickle or copy: a copy compiles again, with the same options
        return functools.partial(type(self), **self.options), ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def _backend_failures() -> tuple[type[Exception], ...]:
    """How ``torch.compile`` reports a backend that cannot compile (no C++ compiler, no Triton)."""
    from torch._dynamo import exc as dynamo_exc
    from torch._inductor import exc as inductor_exc

    found = (getattr(dynamo_exc, "BackendCompilerFailed", None), getattr(inductor_exc, "InductorError", None))
    return tuple(e for e in found if e is not None)
