"""The interface every conditional density in gmmpyro follows.

Inference (:mod:`gmmpyro.inference`), the Pyro distribution and validation accept any object
with this interface: the trained :class:`gmmpyro.DensityModel`, and the exact toy density
:class:`gmmpyro.toy.ToyModel`, so that a learned likelihood and the truth go through the
same machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from .observables import Observable

__all__ = ["ConditionalDensity", "PreparedEvents"]


@runtime_checkable
class PreparedEvents(Protocol):
    """A fixed set of ``N`` observed events with their θ-independent work done once.

    ``events`` are the events, shape ``(N, d)``, in the density's dtype and device;
    ``log_prob(theta)`` takes ``theta`` of shape ``(*batch, k)`` and returns the per-event
    log densities, shape ``(*batch, N)``, differentiable in ``theta``.
    """

    events: torch.Tensor
    n_events: int

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ConditionalDensity(Protocol):
    """A normalised conditional density ``p(x | θ)`` over ``d`` observables and ``k`` parameters.

    Attributes:
        observables: the ``d`` observables, in column order of ``x``.
        params: the ``k`` parameter names, in column order of ``theta``.
        theta_bounds: ``(k, 2)`` tensor, the parameter range the density is valid (trained) in.
        device, dtype: where and in which precision it computes.

    Methods:
        log_prob(x, theta): ``x (*, d)`` and ``theta (*, k)`` broadcast against each other's
            batch dimensions; returns ``(*)``, differentiable in ``theta``; ``-inf`` outside
            the support.
        sample(n, theta, seed=None): ``theta (*batch, k)``; returns ``(n, *batch, d)``.
        prepare(x): ``x (N, d)`` → :class:`PreparedEvents`.
    """

    observables: Sequence[Observable]
    params: Sequence[str]

    @property
    def theta_bounds(self) -> torch.Tensor: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def log_prob(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int, theta: torch.Tensor, seed: int | None = None) -> torch.Tensor: ...

    def prepare(self, x: torch.Tensor) -> PreparedEvents: ...
