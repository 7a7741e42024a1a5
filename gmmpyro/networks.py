r"""The per-observable conditional networks of the autoregressive density, in four designs.

Each factor ``p_i(u_i | u_<i, θ)`` has its own network, split into a θ part (computed once
per parameter point), an event part (computed once per event) and a combination of the
two (computed for every event at every θ). Inference scores fixed events at many θ, so
the cost of the combination is what it pays.

* ``design="paper"`` (Menary & Price): the first trunk layer acts on a θ branch and a
  ``u_<i`` branch; being linear, it splits exactly into a θ part and an event part that are
  added, and the rest of the trunk and the heads run on every (event, θ) pair.
* ``design="lowrank"``: the network's outputs (logits, means and widths of the mixture)
  are a rank-``R`` product of event features and θ features,

  .. math:: o(u_{<i}, θ) = \sum_{r=0}^{R} b_r(θ)\, A_r(u_{<i}), \qquad b_0 = 1,

  with ``A`` an MLP of ``u_<i`` (a learned constant for the first factor) and ``b`` a small
  MLP of ``θ``. All the depth sits in the θ-independent ``A``; per (event, θ) pair only the
  ``(R + 1)·3N_G`` products of the sum remain.
* ``design="amplitudes"``: as ``"lowrank"``, but θ enters the mixture's amplitudes (logits)
  alone; the means and widths of the Gaussians depend on ``u_<i`` only. Each event's
  Gaussian densities, truncation included, are then computed once, and one θ costs the
  ``(R + 1)·N_G`` products of the logits and one exponential per event, factor and
  component: the θ-dependence is a reweighting of event-dependent components. The first
  factor, which has no ``u_<i``, is a ``"lowrank"`` network (its mixture depends on θ alone
  and is computed once per θ).
* ``design="film"`` (:mod:`gmmpyro.film`): θ scales and shifts the last hidden layer ``h`` of
  an MLP of ``u_<i`` (feature-wise linear modulation), followed by one linear layer,

  .. math:: o(u_{<i}, θ) = W\, φ\big((1 + γ(θ)) ⊙ h(u_{<i}) + β(θ)\big) + c;

  per (event, θ) pair one modulated layer of width ``H`` and ``H·3N_G`` products remain, and
  the outputs stay nonlinear in θ (means and widths move with θ).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DESIGNS", "CategoricalNetwork", "GaussianMixtureNetwork", "NetworkConfig"]

DESIGNS = ("paper", "lowrank", "amplitudes", "film")


@dataclass(frozen=True)
class NetworkConfig:
    """Constants of the conditional networks (journal Fig. 3 and Tables 3–5).

    Arguments:
        n_gauss: number of Gaussian components ``N_G`` per observable.
        A1, A2: θ-branch width ``N1 = A1 + A2·N_θ`` (other designs: width of the θ network's
            two hidden layers).
        B1, B2: ``u_<i``-branch width ``N2 = B1 + B2·N_u`` (other designs: width of the event
            network's hidden layers).
        C: number of trunk layers of width ``N1 + N2`` (other designs: hidden layers of the
            event network).
        D: each head's hidden width is ``D·N_G`` (``"paper"`` only).
        s_f, s_mu, s_sigma: scale of the amplitude, mean and width heads.
        f_sigma: initial width in units of ``(u_max - u_min) / N_G``.
        epsilon: added to every width.
        leaky_slope: negative slope of the LeakyReLU activations.
        init_scale: weights start uniform in ``±init_scale/√N_in`` (paper: 10/3).
        truncate: truncate each Gaussian to the latent range for bounded observables, so
            the density is normalised on the physical domain.
        categorical_widths: hidden widths of the categorical network of discrete observables
            (``"paper"`` only).
        design: ``"paper"``, the network of the paper; ``"lowrank"``, whose cost per
            (event, θ) pair is a rank-``R`` product; ``"amplitudes"``, the same with θ in
            the mixture amplitudes alone; or ``"film"``, θ scaling and shifting the last hidden
            layer of an event network (see the module docstring).
        rank: ``R`` of the ``"lowrank"`` and ``"amplitudes"`` designs.
        film_width: width ``H`` of the θ-modulated layer of the ``"film"`` design.

    Example:
        >>> NetworkConfig(n_gauss=30).n_gauss
        30
        >>> NetworkConfig(design="lowrank", rank=8).rank
        8
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
    design: Literal["paper", "lowrank", "amplitudes", "film"] = "paper"
    rank: int = 16
    film_width: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical_widths", tuple(int(w) for w in self.categorical_widths))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for constants that cannot build a network."""
        for name in ("n_gauss", "A1", "A2", "B1", "B2", "C", "D", "rank", "film_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"NetworkConfig.{name} must be an integer, got {value!r}")
        if self.design not in DESIGNS:
            raise ValueError(f"NetworkConfig.design must be one of {DESIGNS}, got {self.design!r}")
        for name in ("n_gauss", "A1", "C", "D", "rank", "film_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"NetworkConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("A2", "B1", "B2"):
            if getattr(self, name) < 0:
                raise ValueError(f"NetworkConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("s_f", "s_mu", "s_sigma", "leaky_slope", "f_sigma", "epsilon", "init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"NetworkConfig.{name} must be a finite number, got {value!r}")
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


def uniform_init(layer: nn.Linear, scale: float) -> None:
    bound = scale / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)


class MixtureOutputs:
    """Mixin of the continuous factor networks: raw outputs → log-weights, means, widths of ``N_G`` Gaussians.

    ``log w = log_softmax(s_f·o_f)``, ``μ = s_μ·o_μ + μ_0`` (``μ_0`` spaced linearly over the
    latent range), ``σ = σ_0·exp(s_σ·o_σ) + ε``.
    """

    def _init_outputs(self, config: NetworkConfig, latent_range) -> None:
        u_min, u_max = latent_range
        n_g = config.n_gauss
        self.scales = (config.s_f, config.s_mu, config.s_sigma)
        self.epsilon = config.epsilon
        self.register_buffer("mean_offset", torch.linspace(u_min, u_max, n_g))
        self.log_width0 = math.log(config.f_sigma * (u_max - u_min) / n_g)

    def _outputs(self, logits, means, widths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s_f, s_mu, s_sigma = self.scales
        log_weights = torch.log_softmax(s_f * logits, -1)
        means = s_mu * means + self.mean_offset
        widths = torch.exp(s_sigma * widths + self.log_width0) + self.epsilon
        return log_weights, means, widths


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

    def event_layout(self, event_part: torch.Tensor | None) -> torch.Tensor | None:
        """The event part as stored for scoring at many θ (as it is)."""
        return event_part

    def features(self, pre: torch.Tensor) -> torch.Tensor:
        """The rest of the trunk, from the first layer's pre-activation: ``(*, W)`` → ``(*, W_last)``."""
        h = self._activate(pre)
        for layer in self.trunk[1:]:
            h = self._activate(layer(h))
        return h


class GaussianMixtureNetwork(MixtureOutputs, _FactorNetwork):
    """Network of one continuous factor: the amplitudes, means and widths of ``N_G`` Gaussians.

    Arguments:
        n_theta: number of parameters ``k``.
        n_prev: number of preceding latent observables ``i``.
        config: the network constants.
        latent_range: ``(u_min, u_max)``; the initial means are spaced linearly over it.

    Example:
        >>> net = GaussianMixtureNetwork(2, 1, NetworkConfig())
        >>> [t.shape for t in net.mixture(net.theta_part(torch.zeros(5, 2)), net.event_part(torch.zeros(5, 1)))]
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
                uniform_init(module, config.init_scale)
        self._init_outputs(config, latent_range)

    def mixture(
        self, theta_part: torch.Tensor, event_part: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture parameters from the θ part ``(*θ, W)`` and the event part ``(*x, W)`` or ``None``.

        Returns:
            ``(log_weights, means, widths)``, each ``broadcast(*θ, *x) + (N_G,)``;
            ``log_weights`` are normalised (log-softmax).
        """
        h = self.features(theta_part if event_part is None else theta_part + event_part)
        return self._outputs(*(head(h) for head in self.heads))


class CategoricalNetwork(_FactorNetwork):
    """Network of one discrete factor: log-probabilities of its ``b - a + 1`` values.

    Example:
        >>> net = CategoricalNetwork(2, 0, 4, NetworkConfig())
        >>> probs = net.log_probs(net.theta_part(torch.zeros(3, 2)), None).exp()
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
                uniform_init(module, config.init_scale)

    def log_probs(self, theta_part: torch.Tensor, event_part: torch.Tensor | None) -> torch.Tensor:
        """Normalised log-probabilities ``(*, n_categories)`` from the θ and event parts."""
        pre = theta_part if event_part is None else theta_part + event_part
        return torch.log_softmax(self.output(self.features(pre)), -1)


def mlp(widths: list[int], slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), nn.LeakyReLU(slope)]
    return nn.Sequential(*layers[:-1])
