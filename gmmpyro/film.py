"""The ``"film"`` factor networks: θ modulates the last hidden layer of an event network.

.. math:: o(u_{<i}, θ) = W\\, φ\\big((1 + γ(θ)) ⊙ h(u_{<i}) + β(θ)\\big) + c

``h`` is an MLP of the preceding latent values (a learned constant for the first factor),
``(γ, β)`` a small MLP of ``θ``, ``φ`` a LeakyReLU and ``W`` one linear layer to the
mixture's logits, means and widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .compiled_film import FilmInputs, FilmKernels
from .lowrank import _compiled_log_prob, _StackedThetaNetworks
from .mixture import _limit_bits, _widest, mixture_log_prob
from .networks import MixtureOutputs, NetworkConfig, mlp, uniform_init

__all__ = ["FilmMixtureNetwork", "StackedFilm"]


class FilmMixtureNetwork(MixtureOutputs, nn.Module):
    """The ``"film"`` network of one continuous factor.

    Example:
        >>> net = FilmMixtureNetwork(2, 1, NetworkConfig(design="film", film_width=8))
        >>> events = net.event_part(torch.zeros(5, 1))  # once per event: N H
        >>> [t.shape for t in net.mixture(net.theta_part(torch.zeros(3, 1, 2)), events)]  # G N N_G
        [torch.Size([3, 5, 20]), torch.Size([3, 5, 20]), torch.Size([3, 5, 20])]
    """

    def __init__(self, n_theta: int, n_prev: int, config: NetworkConfig, latent_range=(-5.0, 5.0)):
        super().__init__()
        width, slope = config.film_width, config.leaky_slope
        self.slope = slope
        theta_width = config.A1 + config.A2 * n_theta
        self.theta_net = mlp([n_theta, theta_width, theta_width, 2 * width], slope)
        if n_prev > 0:
            event_width = config.B1 + config.B2 * n_prev
            self.event_net = mlp([n_prev] + [event_width] * config.C + [width], slope)
            self.event_constant = None
        else:
            self.event_net = None
            self.event_constant = nn.Parameter(torch.empty(width).uniform_(-1.0, 1.0))  # as an event net's outputs
        self.head = nn.Linear(width, 3 * config.n_gauss)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                uniform_init(module, config.init_scale)
        # γ = β = 0 at the start, so training begins from a θ-independent density (on the toy a tenth
        # less KL gap than the paper's uniform start, two seeds: docs/benchmarks.md)
        nn.init.zeros_(self.theta_net[-1].weight)
        nn.init.zeros_(self.theta_net[-1].bias)
        self._init_outputs(config, latent_range)

    def theta_part(self, theta: torch.Tensor) -> torch.Tensor:
        """``(*, k)`` → ``(*, 2H)``: the scale ``γ`` and shift ``β`` of the modulated layer."""
        return self.theta_net(theta)

    def event_part(self, u_prev: torch.Tensor) -> torch.Tensor:
        """``(*, i)`` → ``(*, H)``; the learned constant ``(H,)`` for the first factor."""
        if self.event_net is None:
            return self.event_constant
        return self.event_net(u_prev)

    def event_layout(self, event_part: torch.Tensor) -> torch.Tensor:
        """The event part as stored for scoring at many θ (as it is)."""
        return event_part

    def mixture(self, theta_part: torch.Tensor, event_part: torch.Tensor):
        """``(log_weights, means, widths)``, each ``broadcast(*θ, *x) + (N_G,)``."""
        scale, shift = theta_part.chunk(2, -1)
        h = F.leaky_relu(torch.addcmul(shift + event_part, scale, event_part), self.slope)
        return self._outputs(*self.head(h).chunk(3, -1))


class StackedFilm(_StackedThetaNetworks):
    """All continuous factors of a ``"film"`` model on fixed events, scored together at any θ.

    The event networks' outputs ``h`` are computed once (by :meth:`gmmpyro.DensityModel.prepare`);
    one θ then costs the θ networks, the modulation and head of each factor, and the mixtures.
    With compiled ``kernels`` (:meth:`gmmpyro.DensityModel.compile`) the value and each event's
    θ-Jacobian come from one compiled expression (:mod:`gmmpyro.compiled_film`) where it holds;
    otherwise, and for second derivatives, autograd of :meth:`expression`. Build it again
    after further training.

    Arguments:
        networks: the ``d`` factor networks, in autoregressive order.
        event_parts: their event parts: ``(H,)``, then ``(N, H)`` each.
        u: latent values of the events in autoregressive order, shape ``(N, d)``.
        truncated: per factor, whether its Gaussians are truncated to ``latent_range``.
        latent_range: ``(u_min, u_max)``.
        kernels: compiled kernels, or ``None``.
    """

    def __init__(
        self,
        networks: Sequence[FilmMixtureNetwork],
        event_parts: Sequence[torch.Tensor],
        u: torch.Tensor,
        truncated: Sequence[bool],
        latent_range: tuple[float, float],
        kernels: FilmKernels | None = None,
    ) -> None:
        super().__init__(networks)
        self.networks = list(networks)
        self.event_parts = [e.detach() for e in event_parts]
        self.u = u.detach().T  # d N
        self.bounds = [latent_range if cut else None for cut in truncated]
        self.kernels = kernels
        if kernels is not None:
            self.kernel_inputs = self._kernel_inputs(truncated, latent_range)

    def _kernel_inputs(self, truncated: Sequence[bool], latent_range: tuple[float, float]) -> FilmInputs:
        first, d = self.networks[0], len(self.networks)
        later = d > 1
        return FilmInputs(
            weights=self.weights,
            biases=self.biases,
            slope=self.slope,
            first_constant=self.event_parts[0],
            head_weights=torch.stack([net.head.weight.detach() for net in self.networks]),
            head_biases=torch.stack([net.head.bias.detach() for net in self.networks]).unsqueeze(-1),
            mean_offset=first.mean_offset,
            log_width0=first.log_width0,
            scales=first.scales,
            epsilon=first.epsilon,
            bounds=self.bounds[0],
            widest=_widest(latent_range, self.u.dtype),
            u_first=self.u[0],
            limit=_limit_bits(self.u.dtype),
            events=torch.stack(self.event_parts[1:]).transpose(1, 2).contiguous() if later else None,
            u_later=self.u[1:].view(d - 1, 1, 1, -1) if later else None,
            truncated=torch.tensor(truncated[1:], device=self.u.device).view(-1, 1, 1, 1) if later else None,
            latent_range=latent_range,
        )

    def log_prob(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """Summed latent log densities of the factors, ``θ (B, k)`` (network inputs) → ``(B, N)``."""
        compiled = _compiled_log_prob(self, theta_scaled)
        return self.expression(theta_scaled) if compiled is None else compiled

    def expression(self, theta_scaled: torch.Tensor) -> torch.Tensor:
        """:meth:`log_prob` composed of differentiable parts (any device; second derivatives)."""
        total = 0.0
        for net, events, u_i, bounds in zip(self.networks, self.event_parts, self.u, self.bounds, strict=True):
            mixture = net.mixture(net.theta_part(theta_scaled).unsqueeze(-2), events)  # 3 x (B N N_G)
            total = total + mixture_log_prob(u_i, *mixture, bounds)
        return total
