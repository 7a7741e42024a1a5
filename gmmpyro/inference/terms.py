"""Extra log-likelihood terms that join the per-event likelihood (extended likelihood)."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["LogLikelihoodTerm", "PoissonTerm"]

LogLikelihoodTerm = Callable[[torch.Tensor], torch.Tensor]
"""A callable ``term(theta)`` with ``theta (*batch, k)`` returning a log-likelihood ``(*batch)``."""


class PoissonTerm:
    """Poisson term of the extended likelihood: ``n ~ Poisson(ν(θ))``.

    .. math:: \\ln L_\\text{count}(θ) = n \\ln ν(θ) - ν(θ) - \\ln n!

    Arguments:
        rate: callable ``ν(theta)``, ``theta (*batch, k)`` → expected count ``(*batch)``,
            positive and differentiable in ``theta``.
        observed: the observed count ``n`` (usually the number of observed events).

    Example:
        >>> term = PoissonTerm(lambda theta: 100.0 * (1 + theta[..., 0]), observed=110)
        >>> term(torch.tensor([[0.1], [0.0]])).shape
        torch.Size([2])
    """

    def __init__(self, rate: Callable[[torch.Tensor], torch.Tensor], observed: int | float) -> None:
        if not callable(rate):
            raise TypeError(f"rate must be a callable theta -> expected count, got {type(rate).__name__}")
        if observed < 0:
            raise ValueError(f"observed count must be non-negative, got {observed}")
        self.rate = rate
        self.observed = float(observed)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        nu = self.rate(theta)
        if not isinstance(nu, torch.Tensor):
            nu = torch.as_tensor(nu, dtype=theta.dtype, device=theta.device)
        n = torch.as_tensor(self.observed, dtype=nu.dtype, device=nu.device)
        return torch.xlogy(n, nu) - nu - torch.lgamma(n + 1)

    def __repr__(self) -> str:
        return f"PoissonTerm(rate={self.rate!r}, observed={self.observed:g})"
