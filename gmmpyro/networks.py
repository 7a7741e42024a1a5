"""The per-observable conditional networks of the autoregressive density.

Each factor ``p_i(u_i | u_<i, θ)`` has its own network. Its first trunk layer acts on the
concatenation of a θ branch and a ``u_<i`` branch; because that layer is linear, it splits
exactly into a θ part and an event part that are added before the activation. The split is
what makes evaluation cheap: the θ part is computed once per distinct θ and the event part
once per event, then they are broadcast against each other (``theta_part + event_part``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CategoricalNetwork", "GaussianMixtureNetwork", "NetworkConfig", "log_normal_mass"]


@dataclass(frozen=True)
class NetworkConfig:
    """Constants of the conditional networks (journal Fig. 3 and Tables 3–5).

    Arguments:
        n_gauss: number of Gaussian components ``N_G`` per observable.
        A1, A2: θ-branch width ``N1 = A1 + A2·N_θ``.
        B1, B2: ``u_<i``-branch width ``N2 = B1 + B2·N_u``.
        C: number of trunk layers of width ``N1 + N2``.
        D: each head's hidden width is ``D·N_G``.
        s_f, s_mu, s_sigma: scale of the amplitude, mean and width heads.
        f_sigma: initial width in units of ``(u_max - u_min) / N_G``.
        epsilon: added to every width.
        leaky_slope: negative slope of the LeakyReLU activations.
        init_scale: weights start uniform in ``±init_scale/√N_in`` (paper: 10/3).
        truncate: truncate each Gaussian to the latent range for bounded observables, so
            the density is normalised on the physical domain.
        categorical_widths: hidden widths of the categorical network of discrete observables.

    Example:
        >>> NetworkConfig(n_gauss=30).n_gauss
        30
    """

    n_gauss: int = 20
    A1: int = 50
    A2: int = 0
    B1: int = 50
    B2: int = 20
    C: int = 2
    D: int = 3
    s_f: float = 0.01
    s_mu: float = 0.01
    s_sigma: float = 0.01
    f_sigma: float = 0.25
    epsilon: float = 1e-4
    leaky_slope: float = 0.2
    init_scale: float = 10.0 / 3.0
    truncate: bool = True
    categorical_widths: tuple[int, ...] = (300, 200)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical_widths", tuple(int(w) for w in self.categorical_widths))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for constants that cannot build a network."""
        for name in ("n_gauss", "A1", "C", "D"):
            if getattr(self, name) < 1:
                raise ValueError(f"NetworkConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("A2", "B1", "B2"):
            if getattr(self, name) < 0:
                raise ValueError(f"NetworkConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("f_sigma", "epsilon", "init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"NetworkConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.categorical_widths or min(self.categorical_widths) < 1:
            raise ValueError(
                f"NetworkConfig.categorical_widths must be positive, got {self.categorical_widths}"
            )

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary."""
        data = asdict(self)
        data["categorical_widths"] = list(self.categorical_widths)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown NetworkConfig fields {sorted(unknown)}")
        return cls(**data)


def log_normal_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Φ(b) - Φ(a))`` for ``a < b``, accurate far in either tail.

    Example:
        >>> round(float(log_normal_mass(torch.tensor(40.0, dtype=torch.float64), torch.tensor(41.0))), 3)
        -804.608
    """
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + torch.log1p(-torch.exp(torch.special.log_ndtr(lo) - log_hi))


def _uniform_init(layer: nn.Linear, scale: float) -> None:
    bound = scale / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)


class _FactorNetwork(nn.Module):
    """θ branch, ``u_<i`` branch and trunk shared by both kinds of factor network."""

    def __init__(self, n_theta: int, n_prev: int, theta_width: int, prev_width: int, trunk_widths, config):
        super().__init__()
        self.n_prev = n_prev
        self.slope = config.leaky_slope
        self.theta_branch = nn.Linear(n_theta, theta_width)
        self.prev_branch = nn.Linear(n_prev, prev_width) if n_prev > 0 else None
        self.theta_width = theta_width
        widths = [theta_width + (prev_width if n_prev > 0 else 0), *trunk_widths]
        self.trunk = nn.ModuleList(nn.Linear(w_in, w_out) for w_in, w_out in itertools.pairwise(widths))

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(h, self.slope)

    def theta_part(self, theta: torch.Tensor) -> torch.Tensor:
        """First trunk layer's θ contribution, bias included: ``(*, k)`` → ``(*, W)``."""
        first = self.trunk[0]
        h = self._activate(self.theta_branch(theta))
        return F.linear(h, first.weight[:, : self.theta_width], first.bias)

    def event_part(self, u_prev: torch.Tensor) -> torch.Tensor | None:
        """First trunk layer's ``u_<i`` contribution: ``(*, i)`` → ``(*, W)``, or ``None`` for i = 0."""
        if self.prev_branch is None:
            return None
        first = self.trunk[0]
        h = self._activate(self.prev_branch(u_prev))
        return F.linear(h, first.weight[:, self.theta_width :])

    def features(self, pre: torch.Tensor) -> torch.Tensor:
        """The rest of the trunk, from the first layer's pre-activation: ``(*, W)`` → ``(*, W_last)``."""
        h = self._activate(pre)
        for layer in self.trunk[1:]:
            h = self._activate(layer(h))
        return h


class GaussianMixtureNetwork(_FactorNetwork):
    """Network of one continuous factor: the amplitudes, means and widths of ``N_G`` Gaussians.

    Arguments:
        n_theta: number of parameters ``k``.
        n_prev: number of preceding latent observables ``i``.
        config: the network constants.
        latent_range: ``(u_min, u_max)``; the initial means are spaced linearly over it.

    Example:
        >>> net = GaussianMixtureNetwork(2, 1, NetworkConfig())
        >>> pre = net.theta_part(torch.zeros(5, 2)) + net.event_part(torch.zeros(5, 1))
        >>> [t.shape for t in net.mixture(pre)]
        [torch.Size([5, 20]), torch.Size([5, 20]), torch.Size([5, 20])]
    """

    def __init__(self, n_theta: int, n_prev: int, config: NetworkConfig, latent_range=(-5.0, 5.0)):
        n1 = config.A1 + config.A2 * n_theta
        n2 = config.B1 + config.B2 * n_prev
        width = n1 + (n2 if n_prev > 0 else 0)
        super().__init__(n_theta, n_prev, n1, n2, [width] * config.C, config)
        n_g, hidden = config.n_gauss, config.D * config.n_gauss
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(config.leaky_slope), nn.Linear(hidden, n_g))
            for _ in range(3)
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _uniform_init(module, config.init_scale)
        u_min, u_max = latent_range
        self.scales = (config.s_f, config.s_mu, config.s_sigma)
        self.epsilon = config.epsilon
        self.register_buffer("mean_offset", torch.linspace(u_min, u_max, n_g))
        self.log_width0 = math.log(config.f_sigma * (u_max - u_min) / n_g)

    def mixture(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture parameters from the first layer's pre-activation ``(*, W)``.

        Returns:
            ``(log_weights, means, widths)``, each ``(*, N_G)``; ``log_weights`` are
            normalised (log-softmax).
        """
        h = self.features(pre)
        s_f, s_mu, s_sigma = self.scales
        logits, means, widths = (head(h) for head in self.heads)
        log_weights = torch.log_softmax(s_f * logits, -1)
        means = s_mu * means + self.mean_offset
        widths = torch.exp(s_sigma * widths + self.log_width0) + self.epsilon
        return log_weights, means, widths


class CategoricalNetwork(_FactorNetwork):
    """Network of one discrete factor: log-probabilities of its ``b - a + 1`` values.

    Example:
        >>> net = CategoricalNetwork(2, 0, 4, NetworkConfig())
        >>> probs = net.log_probs(net.theta_part(torch.zeros(3, 2))).exp()
        >>> probs.shape, torch.allclose(probs.sum(-1), torch.ones(3))
        (torch.Size([3, 4]), True)
    """

    def __init__(self, n_theta: int, n_prev: int, n_categories: int, config: NetworkConfig):
        n1 = config.A1 + config.A2 * n_theta
        n2 = config.B1 + config.B2 * n_prev
        super().__init__(n_theta, n_prev, n1, n2, config.categorical_widths, config)
        self.output = nn.Linear(config.categorical_widths[-1], n_categories)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _uniform_init(module, config.init_scale)

    def log_probs(self, pre: torch.Tensor) -> torch.Tensor:
        """Normalised log-probabilities ``(*, n_categories)`` from the pre-activation ``(*, W)``."""
        return torch.log_softmax(self.output(self.features(pre)), -1)
