"""The ``"lowrank"`` factor networks: θ enters through a rank-``R`` product with event features.

.. math:: o(u_{<i}, θ) = \\sum_{r=0}^{R} b_r(θ)\\, A_r(u_{<i}), \\qquad b_0 = 1,

``A`` is an MLP of the preceding latent values (a learned constant for the first factor) and
``b`` a small MLP of ``θ``; ``o`` holds the mixture's logits, means and widths (or a discrete
observable's logits). All the depth sits in the θ-independent ``A``, computed once per event
by :meth:`gmmpyro.DensityModel.prepare`; one θ then costs ``(R + 1)·3N_G`` products per event
and factor. :class:`StackedLowRank` evaluates all continuous factors of prepared events
together, in a few batched operations instead of a few per factor.

In the ``"amplitudes"`` design (:class:`AmplitudeMixtureNetwork`, for every factor but the
first) the sum runs over the logits alone; ``A`` also gives the means and widths, which do not
depend on θ. Prepared events then keep each Gaussian's density (truncation included) and
:class:`StackedAmplitudes` pays per θ only the logits' products, one exponential per event,
factor and component, and two sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .compiled_amplitudes import AmplitudeInputs, AmplitudeKernels
from .mixture import (
    _LOG2_E,
    _LOG_SQRT_2PI,
    _autograd_backward,
    _limit_bits,
    _MixtureAtPoints,
    _too_wide,
    _widest,
    component_log_prob,
    log_normal_mass,
    mixture_at_points,
    mixture_log_prob,
)
from .networks import MixtureOutputs, NetworkConfig, mlp, uniform_init

__all__ = [
    "AmplitudeMixtureNetwork",
    "LowRankCategoricalNetwork",
    "LowRankMixtureNetwork",
    "StackedAmplitudes",
    "StackedLowRank",
]

# from this many θ on, the later factors' backward product runs faster transposed (CPU: 0.73× at 16 θ, 1.8× at 1)
_TRANSPOSED_PRODUCT_FROM = 12


class _LowRankFactor(nn.Module):
    """``o(u_<i, θ) = Σ_r b_r(θ) A_r(u_<i)`` from θ features ``b (*, R+1)`` and event features ``A (*, R+1, n_out)``.

    ``extra_rows`` more rows of event features (θ-independent outputs) follow the ``R + 1``.
    """

    def __init__(self, n_theta: int, n_prev: int, n_out: int, config: NetworkConfig, extra_rows: int = 0) -> None:
        super().__init__()
        rank, slope = config.rank, config.leaky_slope
        theta_width = config.A1 + config.A2 * n_theta
        self.theta_net = mlp([n_theta, theta_width, theta_width, rank], slope)
        self.shape = (rank + 1 + extra_rows, n_out)
        if n_prev > 0:
            event_width = config.B1 + config.B2 * n_prev
            self.event_net = mlp([n_prev] + [event_width] * config.C + [self.shape[0] * n_out], slope)
            self.event_constant = None
        else:  # the first factor has no preceding observables: its event features are learned constants
            self.event_net = None
            bound = config.init_scale / math.sqrt(rank + 1)
            self.event_constant = nn.Parameter(torch.empty(self.shape).uniform_(-bound, bound))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                uniform_init(module, config.init_scale)

    def theta_part(self, theta: torch.Tensor) -> torch.Tensor:
        """θ features ``(*, k)`` → ``(*, R + 1)``, the last one constant 1."""
        b = self.theta_net(theta)
        return torch.cat([b, torch.ones_like(b[..., :1])], -1)

    def event_part(self, u_prev: torch.Tensor) -> torch.Tensor:
        """Event features ``(*, i)`` → ``(*, R + 1 + extra_rows, n_out)``; without ``*`` for the first factor."""
        if self.event_net is None:
            return self.event_constant
        return self.event_net(u_prev).unflatten(-1, self.shape)

    def event_layout(self, event_part: torch.Tensor) -> torch.Tensor:
        """The event part ``(N, R+1, n_out)`` stored rank-major: a batch of θ scores it in one matrix product."""
        if event_part.dim() != 3:
            return event_part
        return event_part.transpose(0, 1).contiguous().transpose(0, 1)

    def combine(self, theta_part: torch.Tensor, event_part: torch.Tensor) -> torch.Tensor:
        """``Σ_r b_r A_r``: ``(*θ, R+1)`` and ``(*x, R+1, n_out)`` → ``broadcast(*θ, *x) + (n_out,)``."""
        return torch.einsum("...r,...ro->...o", theta_part, event_part)


class LowRankMixtureNetwork(MixtureOutputs, _LowRankFactor):
    """The ``"lowrank"`` network of one continuous factor (see the module docstring).

    Example:
        >>> net = LowRankMixtureNetwork(2, 1, NetworkConfig(design="lowrank"))
        >>> events = net.event_part(torch.zeros(5, 1))  # once per event: N R+1 3N_G
        >>> [t.shape for t in net.mixture(net.theta_part(torch.zeros(3, 1, 2)), events)]  # G N N_G
        [torch.Size([3, 5, 20]), torch.Size([3, 5, 20]), torch.Size([3, 5, 20])]
    """

    def __init__(self, n_theta: int, n_prev: int, config: NetworkConfig, latent_range=(-5.0, 5.0)):
        super().__init__(n_theta, n_prev, 3 * config.n_gauss, config)
        self._init_outputs(config, latent_range)

    def mixture(self, theta_part: torch.Tensor, event_part: torch.Tensor):
        """``(log_weights, means, widths)``, each ``broadcast(*θ, *x) + (N_G,)``."""
        return self._outputs(*self.combine(theta_part, event_part).chunk(3, -1))


class AmplitudeMixtureNetwork(MixtureOutputs, _LowRankFactor):
    """The ``"amplitudes"`` network of one continuous factor: θ enters the logits alone.

    Event features ``(*, R + 3, N_G)``: ``R + 1`` rows of logit features, then the means' and
    the widths' pre-activations, which do not depend on θ.

    Example:
        >>> net = AmplitudeMixtureNetwork(2, 1, NetworkConfig(design="amplitudes", rank=4))
        >>> events = net.event_part(torch.zeros(5, 1))  # once per event: N R+3 N_G
        >>> weights, means, widths = net.mixture(net.theta_part(torch.randn(3, 1, 2)), events)  # G N N_G
        >>> weights.shape, bool((means[0] == means[2]).all())
        (torch.Size([3, 5, 20]), True)
    """

    def __init__(self, n_theta: int, n_prev: int, config: NetworkConfig, latent_range=(-5.0, 5.0)):
        super().__init__(n_theta, n_prev, config.n_gauss, config, extra_rows=2)
        self._init_outputs(config, latent_range)

    def mixture(self, theta_part: torch.Tensor, event_part: torch.Tensor):
        """``(log_weights, means, widths)``, each ``broadcast(*θ, *x) + (N_G,)``."""
        rank1 = self.shape[0] - 2
        logits = self.combine(theta_part, event_part[..., :rank1, :])
        log_weights, means, widths = self._outputs(logits, event_part[..., rank1, :], event_part[..., rank1 + 1, :])
        return log_weights, means.expand_as(log_weights), widths.expand_as(log_weights)


class LowRankCategoricalNetwork(_LowRankFactor):
    """The ``"lowrank"`` network of one discrete factor: log-probabilities of its values.

    Example:
        >>> net = LowRankCategoricalNetwork(2, 0, 4, NetworkConfig(design="lowrank"))
        >>> probs = net.log_probs(net.theta_part(torch.zeros(3, 2)), net.event_part(torch.zeros(0))).exp()
        >>> probs.shape, torch.allclose(probs.sum(-1), torch.ones(3))
        (torch.Size([3, 4]), True)
    """

    def __init__(self, n_theta: int, n_prev: int, n_categories: int, config: NetworkConfig):
        super().__init__(n_theta, n_prev, n_categories, config)

    def log_probs(self, theta_part: torch.Tensor, event_part: torch.Tensor) -> torch.Tensor:
        """Normalised log-probabilities ``broadcast(*θ, *x) + (n_categories,)``."""
        return torch.log_softmax(self.combine(theta_part, event_part), -1)


class _StackedThetaNetworks:
    """The ``d`` factors' θ networks as one batched MLP (weights copied, detached)."""

    def __init__(self, networks: Sequence[_LowRankFactor]) -> None:
        layers = [[m for m in net.theta_net if isinstance(m, nn.Linear)] for net in networks]
        depth = len(layers[0])
        self.weights = [torch.stack([net[j].weight.detach().T for net in layers]) for j in range(depth)]  # d in out
        self.biases = [torch.stack([net[j].bias.detach() for net in layers]).unsqueeze(1) for j in range(depth)]
        self.slope = networks[0].theta_net[1].negative_slope
        # set once the fast compiled expression has declined these events (an interval far in a tail):
        # such a Gaussian tends to stay there at other θ, and the declined attempt would be paid at each
        self.far_tails = False

    def theta_features(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """``θ (B, k)`` (network inputs) → ``b (d, B, R + 1)``, the last column 1."""
        return self.theta_features_and_pre_activations(theta_scaled)[0]

    def theta_features_and_pre_activations(self, theta_scaled: torch.Tensor) -> tuple[torch.Tensor, list]:
        """:meth:`theta_features` and the hidden layers' inputs to the activation, ``(d, B, width)`` each."""
        d = len(self.weights[0])
        h = theta_scaled.unsqueeze(0).expand(d, *theta_scaled.shape)  # d B k
        pre_activations = []
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)  # d B width
            if j < len(self.weights) - 1:
                pre_activations.append(h)
                h = F.leaky_relu(h, self.slope)
        return torch.cat([h, torch.ones_like(h[..., :1])], -1), pre_activations

    def theta_gradient(self, grad_features: torch.Tensor, pre_activations: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backward pass of :meth:`theta_features`: ``∂/∂b (d, B, R + 1)`` → ``∂/∂θ (B, k)``."""
        grad = grad_features[..., :-1]  # d B R: the constant column has none
        for j in reversed(range(len(self.weights))):
            if j < len(self.weights) - 1:
                grad = torch.where(pre_activations[j] > 0, grad, self.slope * grad)
            grad = torch.bmm(grad, self.weights[j].transpose(1, 2))  # d B width_in
        return grad.sum(0)


class StackedLowRank(_StackedThetaNetworks):
    """All continuous factors of a ``"lowrank"`` model on fixed events, scored together at any θ.

    Equal to scoring the factors one by one (``LowRankMixtureNetwork.mixture`` and
    ``gmmpyro.mixture.mixture_log_prob``), but the ``d`` factors' θ networks, rank products
    and mixture densities each run as one batched operation: the cost of one θ is a few dozen
    tensor operations whatever ``d``. The networks' weights are copied (detached) on
    construction, so build it again after further training.

    Arguments:
        networks: the ``d`` factor networks, in autoregressive order.
        event_parts: their event parts on the ``N`` events, ``(N, R+1, 3N_G)`` or ``(R+1, 3N_G)``.
        u: latent values of the events in autoregressive order, shape ``(N, d)``.
        truncated: per factor, whether its Gaussians are truncated to ``latent_range``.
        latent_range: ``(u_min, u_max)``.
    """

    def __init__(
        self,
        networks: Sequence[LowRankMixtureNetwork],
        event_parts: Sequence[torch.Tensor],
        u: torch.Tensor,
        truncated: Sequence[bool],
        latent_range: tuple[float, float],
    ) -> None:
        super().__init__(networks)
        n, d = u.shape
        first = networks[0]
        rank1, n_out = first.shape
        events = [e.detach().expand(n, *first.shape) for e in event_parts]  # d x (N R+1 O)
        self.events = torch.stack([e.transpose(0, 1).reshape(rank1, n * n_out) for e in events])  # d R+1 N·O
        self.u = u.detach().T.unsqueeze(1)  # d 1 N
        self.n_events, self.n_out = n, n_out
        self.outputs = first._outputs  # the same constants in every factor: N_G, scales, latent range
        self.truncated = torch.tensor(truncated, device=u.device).view(d, 1, 1, 1)
        self.bounds = latent_range if any(truncated) else None

    def log_prob(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """Summed latent log densities of the factors, ``θ (B, k)`` (network inputs) → ``(B, N)``."""
        h = self.theta_features(theta_scaled)  # d B R+1
        out = torch.bmm(h, self.events).view(len(h), theta_scaled.shape[0], self.n_events, self.n_out)  # d B N 3N_G
        mixture = self.outputs(*out.chunk(3, -1))  # 3 x (d B N N_G)
        return mixture_log_prob(self.u, *mixture, self.bounds, self.truncated).sum(0)  # B N


class StackedAmplitudes(_StackedThetaNetworks):
    """All continuous factors of an ``"amplitudes"`` model on fixed events, scored together at any θ.

    The first factor has no preceding observables: its mixture depends on θ alone, computed
    once per θ and evaluated at the events. For the others, the Gaussians' densities
    ``N(u; μ_g, σ_g) / Z_g`` of every event are computed on construction, relative to each
    event's largest, ``c_g ∈ [0, 1]``; one θ then costs a batched product for the logits ``l``
    and ``log(Σ_g e^{l_g} c_g / Σ_g e^{l_g})`` per event and factor: one ``exp2`` and two sums
    per element, laid out with the events innermost so that the sums over components run
    across contiguous memory. The cached logit features are those of each component minus
    those of the event's best component and scaled to bits, so the product gives the logits
    relative to that component's, ready for ``exp2``: no search for the largest, and the
    numerator is at least 1. Where a weight still overflows (the weights ~80 nats above that
    component's: events far in the tails of the heavy components), the log-sum-exp of the log
    densities takes over (on the CPU only there; elsewhere it is computed for all events and
    selected).
    Equal to scoring the factors one by one (``mixture`` of each network and
    ``gmmpyro.mixture.mixture_log_prob``). Build it again after further training.

    Arguments:
        networks: the ``d`` factor networks, in autoregressive order: a
            :class:`LowRankMixtureNetwork`, then :class:`AmplitudeMixtureNetwork` s.
        event_parts: their event parts: ``(R+1, 3N_G)``, then ``(N, R+3, N_G)`` each.
        u: latent values of the events in autoregressive order, shape ``(N, d)``.
        truncated: per factor, whether its Gaussians are truncated to ``latent_range``.
        latent_range: ``(u_min, u_max)``.
        kernels: compiled kernels (:meth:`gmmpyro.DensityModel.compile`), or ``None``.
    """

    def __init__(
        self,
        networks: Sequence[_LowRankFactor],
        event_parts: Sequence[torch.Tensor],
        u: torch.Tensor,
        truncated: Sequence[bool],
        latent_range: tuple[float, float],
        kernels: AmplitudeKernels | None = None,
    ) -> None:
        super().__init__(networks)
        n = u.shape[0]
        first = networks[0]
        self.first_features = event_parts[0].detach()  # R+1 3N_G
        self.first_outputs = first._outputs
        self.first_scales, self.first_epsilon = first.scales, first.epsilon
        self.u_first = u[:, 0].detach()  # N
        self.first_bounds = latent_range if truncated[0] else None
        self.n_events, self.n_gauss = n, first.shape[1] // 3
        # a numerator below this has lost precision (here only where all of an event's components are
        # -inf: the best component's term is 1): the exact path takes over
        self.smallest = torch.finfo(u.dtype).tiny / torch.finfo(u.dtype).eps
        self.log_components = self.logit_features = self.components = self.log_scale = None
        if len(networks) > 1:
            self._cache_components(networks[1:], event_parts[1:], u[:, 1:], truncated[1:], latent_range)
        self.kernels = kernels
        if kernels is not None:
            self.kernel_inputs = self._kernel_inputs(first, latent_range)

    def _kernel_inputs(self, first: LowRankMixtureNetwork, latent_range: tuple[float, float]) -> AmplitudeInputs:
        dtype = self.u_first.dtype
        return AmplitudeInputs(
            weights=self.weights,
            biases=self.biases,
            slope=self.slope,
            first_features=self.first_features,
            mean_offset=first.mean_offset,
            log_width0=first.log_width0,
            scales=self.first_scales,
            epsilon=self.first_epsilon,
            bounds=self.first_bounds,
            widest=_widest(latent_range, dtype),
            u_first=self.u_first,
            logit_features=self.logit_features,
            components=self.components,
            log_scale=self.log_scale,
            smallest=self.smallest,
            limit=_limit_bits(dtype),
        )

    def _cache_components(self, networks, event_parts, u, truncated, latent_range) -> None:
        """Logit features ``(d-1, R+1, N_G·N)`` and component densities ``(d-1, 1, N_G, N)`` of the later factors."""
        rank1 = networks[0].shape[0] - 2
        events = [e.detach() for e in event_parts]  # d-1 x (N R+3 N_G)
        scale = networks[0].scales[0]
        components = []
        for net, e, u_i, cut in zip(networks, events, u.detach().T, truncated, strict=True):
            _, means, widths = net._outputs(torch.zeros_like(e[:, 0]), e[:, rank1], e[:, rank1 + 1])
            components.append(component_log_prob(u_i, means, widths, latent_range if cut else None).T)  # N_G N
        self.log_components = torch.stack(components).unsqueeze(1)  # d-1 1 N_G N
        largest, best = self.log_components.max(2, keepdim=True)  # d-1 1 1 N
        finite = torch.isfinite(largest)
        self.log_scale = torch.where(finite, largest, torch.zeros_like(largest)).squeeze(2)  # d-1 1 N
        self.components = torch.exp(self.log_components - self.log_scale.unsqueeze(2))  # the best 1
        # logits relative to each event's best component, so the product gives them shifted (no maximum to
        # find), and in bits, log₂ e · l, for exp2 (on the CPU twice as fast as exp)
        features = torch.stack([scale * _LOG2_E * e[:, :rank1].permute(1, 2, 0) for e in events])  # d-1 R+1 N_G N
        reference = features.gather(2, best.expand(-1, rank1, -1, -1))  # d-1 R+1 1 N
        self.logit_features = (features - reference).flatten(2)  # d-1 R+1 N_G·N, in bits

    def log_prob(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """Summed latent log densities of the factors, ``θ (B, k)`` (network inputs) → ``(B, N)``.

        With compiled ``kernels`` (:meth:`gmmpyro.DensityModel.compile`) the value and each
        event's θ-Jacobian come from one compiled expression, where it holds; otherwise, on the
        CPU, a gradient in θ is computed by hand in one pass (:class:`_AmplitudesLogProb`).
        """
        compiled = _compiled_log_prob(self, theta_scaled)
        if compiled is not None:
            return compiled
        if theta_scaled.requires_grad and torch.is_grad_enabled() and theta_scaled.device.type == "cpu":
            return _AmplitudesLogProb.apply(theta_scaled, self)
        return self.expression(theta_scaled)

    def expression(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """:meth:`log_prob` composed of differentiable parts (any device; second derivatives)."""
        h = self.theta_features(theta_scaled)  # d B R+1
        mixture = self.first_outputs(*(h[0] @ self.first_features).chunk(3, -1))  # 3 x (B N_G)
        first = mixture_at_points(self.u_first, *mixture, self.first_bounds)  # B N
        if len(h) == 1:
            return first
        shape = (len(h) - 1, theta_scaled.shape[0], self.n_gauss, self.n_events)
        logits = torch.bmm(h[1:], self.logit_features).view(shape)  # d-1 B N_G N, in bits
        out, lost = _AmplitudeSums.apply(logits, self.components, self.smallest)  # d-1 B N
        out = out + self.log_scale
        if out.device.type != "cpu" or bool(lost.any()):  # on the CPU, only when needed: a rare case
            logits = math.log(2.0) * logits
            exact = torch.logsumexp(logits + self.log_components, 2) - torch.logsumexp(logits, 2)
            out = torch.where(lost, exact, out)
        return first + out.sum(0)  # B N


class _AmplitudeSums(torch.autograd.Function):
    """``log(Σ_g 2^{l_g} c_g / Σ_g 2^{l_g})`` over the components (dim 2), with its gradient by hand.

    ``logits l (d-1, B, N_G, N)`` in bits (``log₂`` of the weights), ``components c (d-1, 1, N_G, N)``
    in ``[0, 1]`` → ``(value (d-1, B, N), lost)``. The logits are taken as they come, clamped to
    ``±L`` (:func:`~gmmpyro.mixture._limit_bits`: 115 in float32, ``e^±80``), without a search for
    their largest: :class:`StackedAmplitudes` gives them relative to the component with ``c = 1``,
    so that ``1 ≤ Σ w c ≤ Σ w``. ``lost`` marks the sums where this cannot hold: a numerator below
    ``smallest`` or a denominator reaching ``2^(L-1)`` (a logit may be clamped); their value and gradient are
    finite placeholders, for the caller to replace. With ``w_g = 2^{l_g}``,
    ``∂/∂l_g = ln 2 · (w_g c_g / Σ w c - w_g / Σ w)``, two elementwise passes from the forward
    pass's products ``w_g c_g``. Second derivatives (a fit's Hessian) go through autograd of
    :meth:`expression`.
    """

    @staticmethod
    def sums(logits, components, smallest) -> tuple[torch.Tensor, ...]:
        """``(weights, products, numerator, denominator, lost)``; a lost numerator and denominator are 1.

        Terms below ``2^-L`` of the reference component's are floored there: they are far below
        the precision of a sum that holds a 1, and smaller arguments leave the CPU's vectorised path.
        """
        limit = _limit_bits(logits.dtype)
        weights = torch.exp2(logits.clamp(-limit, limit))
        products = weights * components
        numerator, denominator = products.sum(2), weights.sum(2)
        lost = (numerator < smallest) | (denominator >= 2.0 ** (limit - 1.0))  # a clamped logit among them
        numerator = torch.where(lost, torch.ones_like(numerator), numerator)
        return weights, products, numerator, torch.where(lost, torch.ones_like(denominator), denominator), lost

    @staticmethod
    def expression(logits, components, smallest):
        """The value for autograd (second derivatives): logits shifted by half their largest (at most ``L/2``).

        The shift changes nothing in the value; it keeps the sums within ``2^±L/2``, so that the
        derivatives, which square them, stay in range (float32 from ~2^64 on).
        """
        shift = 0.5 * logits.detach().amax(2, keepdim=True).clamp(0.0, _limit_bits(logits.dtype))
        _, _, numerator, denominator, lost = _AmplitudeSums.sums(logits - shift, components, smallest)
        return torch.log(numerator) - torch.log(denominator), lost

    @staticmethod
    def forward(ctx, logits, components, smallest):
        weights, products, numerator, denominator, lost = _AmplitudeSums.sums(logits, components, smallest)
        ctx.save_for_backward(logits, components, weights, products, numerator, denominator)
        ctx.smallest = smallest
        ctx.mark_non_differentiable(lost)
        return torch.log(numerator / denominator), lost

    @staticmethod
    def backward(ctx, grad, _):
        logits, components, weights, products, numerator, denominator = ctx.saved_tensors
        if torch.is_grad_enabled():  # the backward pass records a graph: a second derivative follows
            def value(logits, components):
                return _AmplitudeSums.expression(logits, components, ctx.smallest)[0]

            return _autograd_backward(value, (logits, components), ctx.needs_input_grad, grad)
        return _AmplitudeSums.logit_gradient(grad, weights, products, numerator, denominator), None, None

    @staticmethod
    def logit_gradient(grad, weights, products, numerator, denominator) -> torch.Tensor:
        """``grad (d-1 or 1, B, N)`` → ``∂/∂l = ln 2 · (w c / Σ w c - w / Σ w) · grad``, ``(d-1, B, N_G, N)``."""
        grad = math.log(2.0) * grad
        per_numerator, per_denominator = (grad / numerator).unsqueeze(2), (grad / denominator).unsqueeze(2)
        return (products * per_numerator).addcmul_(weights, per_denominator, value=-1.0)


def _compiled_log_prob(stacked, theta_scaled: torch.Tensor) -> torch.Tensor | None:
    """``stacked.log_prob`` from its compiled ``kernels``, or ``None`` without kernels or where they do not hold.

    ``stacked`` has ``kernels``, ``kernel_inputs``, ``expression`` and ``far_tails``
    (:class:`StackedAmplitudes`, :class:`gmmpyro.film.StackedFilm`). Once the fast expression has
    declined these events, every later call takes the variant with the tail formula directly
    (exact at every θ, ~2× the fast one's cost where no interval is far in a tail).
    """
    if stacked.kernels is None or theta_scaled.shape[0] == 0:  # no θ: nothing to compile
        return None
    gradient = theta_scaled.requires_grad and torch.is_grad_enabled()
    with torch.no_grad():
        value, jacobian, ok = stacked.kernels(theta_scaled.detach(), stacked.kernel_inputs, gradient, stacked.far_tails)
        if not bool(ok) and not stacked.far_tails:  # the variant with far-tail intervals, compiled when first needed
            stacked.far_tails = True
            value, jacobian, ok = stacked.kernels(theta_scaled.detach(), stacked.kernel_inputs, gradient, True)
    if not bool(ok):
        return None
    return _GivenJacobian.apply(theta_scaled, value, jacobian, stacked) if gradient else value


class _GivenJacobian(torch.autograd.Function):
    """``value (B, N)`` as a function of ``θ (B, k)`` with its per-event Jacobian ``J (B, N, k)`` given.

    The backward pass is ``Σ_n grad_bn J_bn``; a second derivative (``create_graph``) goes
    through autograd of the stacked factors' ``expression`` (:meth:`StackedAmplitudes.expression`,
    :meth:`gmmpyro.film.StackedFilm.expression`).
    """

    @staticmethod
    def forward(ctx, theta_scaled, value, jacobian, stacked):
        ctx.stacked = stacked
        ctx.save_for_backward(theta_scaled, jacobian)
        return value

    @staticmethod
    def backward(ctx, grad):
        theta_scaled, jacobian = ctx.saved_tensors
        if torch.is_grad_enabled():
            (found,) = _autograd_backward(ctx.stacked.expression, (theta_scaled,), (True,), grad)
            return found, None, None, None
        return torch.bmm(grad.unsqueeze(1), jacobian).squeeze(1), None, None, None


class _AmplitudeParts(NamedTuple):
    """What :class:`_AmplitudesLogProb`'s gradient needs from its forward pass (``None``: not there)."""

    log_weights: torch.Tensor  # the first factor's mixture, B N_G
    widths: torch.Tensor
    edges: torch.Tensor | None  # its truncation interval in units of σ, (α, β): 2 B N_G
    log_mass: torch.Tensor | None  # log Z, B N_G
    z: torch.Tensor  # the events in units of σ, B N_G N
    shares: torch.Tensor  # each term relative to the largest or to a bound of it (_MixtureAtPoints.parts): B N_G N
    total: torch.Tensor  # the shares' sum, B 1 N
    finite: torch.Tensor  # whether the largest term is finite, B 1 N
    weights: torch.Tensor | None  # the later factors' weights 2^l, l in bits from the best component: d-1 B N_G N
    products: torch.Tensor | None  # w_g c_g, d-1 B N_G N
    numerator: torch.Tensor | None  # Σ_g w_g c_g, d-1 B N
    denominator: torch.Tensor | None  # Σ_g w_g, d-1 B N


class _AmplitudesLogProb(torch.autograd.Function):
    """:meth:`StackedAmplitudes.log_prob` on the CPU, ``θ (B, k) → (B, N)``, with its θ-gradient by hand.

    The forward pass keeps what the gradient needs (:class:`_AmplitudeParts` and the θ
    networks' pre-activations); the backward pass then runs the chain rule as a few dozen
    tensor operations instead of the autograd graph of about a hundred. The truncated first
    factor's normalisation ``Z = Φ(β) - Φ(α)`` (``α, β = (lo - μ)/σ, (hi - μ)/σ``) enters
    through ``∂ log Z/∂μ = (p_α - p_β)/σ`` and ``∂ log Z/∂σ = (α p_α - β p_β)/σ``, ``p = φ/Z``
    in log space. Where that does not hold (a component far wider than the truncation
    interval, a later factor's weight out of range), and for second derivatives, the gradient
    is autograd's of :meth:`StackedAmplitudes.expression`.
    """

    @staticmethod
    def forward(ctx, theta_scaled, stacked):
        ctx.stacked = stacked
        parts, pre_activations, value = _AmplitudesLogProb.parts(stacked, theta_scaled)
        ctx.by_hand = parts is not None
        ctx.n_pre = len(pre_activations)
        ctx.save_for_backward(theta_scaled, *pre_activations, *(parts or ()))
        return value

    @staticmethod
    def parts(stacked: StackedAmplitudes, theta_scaled: torch.Tensor):
        """``(parts, pre_activations, value (B, N))``; ``parts`` is ``None`` where the gradient by hand fails."""
        d = len(stacked.weights[0])
        h, pre_activations = stacked.theta_features_and_pre_activations(theta_scaled)  # d B R+1
        log_weights, means, widths = stacked.first_outputs(*(h[0] @ stacked.first_features).chunk(3, -1))  # B N_G
        bounds = stacked.first_bounds
        log_peak = -torch.log(widths) - _LOG_SQRT_2PI  # component_log_prob at its mean, Z's parts kept
        edges = log_mass = None
        if bounds is not None:
            if bool(_too_wide(widths, bounds).any()):
                return None, pre_activations, stacked.expression(theta_scaled)
            edges = (torch.tensor(bounds, dtype=widths.dtype).view(2, 1, 1) - means) / widths  # 2 B N_G: α, β
            log_mass = log_normal_mass(*edges)
            log_peak = log_peak - log_mass
        # B N_G N, B 1 N, B N_G N, B 1 N, B 1 N
        z, first, shares, total, finite = _MixtureAtPoints.parts(log_weights + log_peak, means, widths, stacked.u_first)
        value, later = first.squeeze(1), (None,) * 4
        if d > 1:
            shape = (d - 1, theta_scaled.shape[0], stacked.n_gauss, stacked.n_events)
            logits = torch.bmm(h[1:], stacked.logit_features).view(shape)  # d-1 B N_G N
            *later, lost = _AmplitudeSums.sums(logits, stacked.components, stacked.smallest)
            if bool(lost.any()):
                return None, pre_activations, stacked.expression(theta_scaled)
            _, _, numerator, denominator = later
            value = value + (torch.log(numerator / denominator) + stacked.log_scale).sum(0)
        parts = _AmplitudeParts(log_weights, widths, edges, log_mass, z, shares, total, finite, *later)
        return parts, pre_activations, value

    @staticmethod
    def backward(ctx, grad):
        theta_scaled, *saved = ctx.saved_tensors
        stacked = ctx.stacked
        if not ctx.by_hand or torch.is_grad_enabled():
            with torch.enable_grad():
                (found,) = _autograd_backward(stacked.expression, (theta_scaled,), (True,), grad)
            return (found if torch.is_grad_enabled() else found.detach()), None
        pre_activations, parts = saved[: ctx.n_pre], _AmplitudeParts(*saved[ctx.n_pre :])
        grad_features = _AmplitudesLogProb.first_gradient(stacked, parts, grad).unsqueeze(0)  # 1 B R+1
        if parts.weights is not None:
            grad_features = torch.cat([grad_features, _AmplitudesLogProb.later_gradient(stacked, parts, grad)])
        return stacked.theta_gradient(grad_features, pre_activations), None

    @staticmethod
    def first_gradient(stacked: StackedAmplitudes, parts: _AmplitudeParts, grad: torch.Tensor) -> torch.Tensor:
        """``grad (B, N)`` → its gradient with respect to the first factor's θ features, ``(B, R + 1)``."""
        widths = parts.widths
        # the mixture at the events; grad_a is also the log peaks' gradient (B N_G)
        grad_a, grad_means, grad_widths, _ = _MixtureAtPoints.gradients(
            grad, widths, parts.z, parts.shares, parts.total, parts.finite
        )
        # the peaks: -log σ, then the truncation's -log Z (σ ∂/∂μ and σ ∂/∂σ of log Z: Σ ±φ/Z, Σ ±(α, β) φ/Z)
        peak_means, peak_widths = torch.zeros_like(grad_a), grad_a
        if parts.edges is not None:
            edges = parts.edges
            at_edges = torch.exp(-0.5 * edges * edges - _LOG_SQRT_2PI - parts.log_mass)  # φ(α)/Z, φ(β)/Z
            at_edges = at_edges * torch.tensor([1.0, -1.0], dtype=edges.dtype).view(2, 1, 1)
            peak_means = grad_a * at_edges.sum(0)
            peak_widths = grad_a * (1.0 + (edges * at_edges).sum(0))
        grad_means = grad_means - peak_means / widths
        grad_widths = grad_widths - peak_widths / widths
        s_f, s_mu, s_sigma = stacked.first_scales
        grad_logits = s_f * (grad_a - parts.log_weights.exp() * grad_a.sum(-1, keepdim=True))  # log_softmax
        grad_means = s_mu * grad_means
        grad_widths = s_sigma * (widths - stacked.first_epsilon) * grad_widths  # σ = e^{s o} + ε
        grad_raw = torch.cat([grad_logits, grad_means, grad_widths], -1)  # B 3N_G
        return grad_raw @ stacked.first_features.T

    @staticmethod
    def later_gradient(stacked: StackedAmplitudes, parts: _AmplitudeParts, grad: torch.Tensor) -> torch.Tensor:
        """``grad (B, N)`` → its gradient with respect to the later factors' θ features, ``(d-1, B, R + 1)``."""
        grad_logits = _AmplitudeSums.logit_gradient(
            grad, parts.weights, parts.products, parts.numerator, parts.denominator
        )  # d-1 B N_G N
        grad_logits = grad_logits.flatten(2)  # d-1 B N_G·N
        if grad_logits.shape[1] < _TRANSPOSED_PRODUCT_FROM:
            return torch.bmm(grad_logits, stacked.logit_features.transpose(1, 2))
        return torch.bmm(stacked.logit_features, grad_logits.transpose(1, 2)).transpose(1, 2)
