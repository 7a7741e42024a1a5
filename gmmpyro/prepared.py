"""Observed events with their θ-independent work done once: the fast path of inference.

Every use of a trained model for inference — NUTS, profile scans, fits — scores the *same*
observed events at many ``θ``. :meth:`gmmpyro.DensityModel.prepare` does the work that
does not depend on ``θ`` once (the projection ``u = h(x)``, its log-Jacobian, each factor
network's event branch) and returns a :class:`PreparedModelEvents`; its
``log_prob(theta)`` then pays only the per-θ part. The fast path is explicit: the object
is passed where it is used, nothing is cached on the model.

For a Pyro model of your own, give the prepared events to the distribution::

    prepared = model.prepare(x_obs)

    def pyro_model():
        theta = pyro.sample("theta", dist.Uniform(-1.5, 1.5).expand([2]).to_event(1))
        with pyro.plate("events", prepared.n_events):
            pyro.sample("x", model.distribution(theta, prepared=prepared), obs=prepared.events)

:func:`gmmpyro.bayes.sample_posterior` and the frequentist fits and scans do this for you.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .film import StackedFilm
from .lowrank import StackedAmplitudes, StackedLowRank

if TYPE_CHECKING:
    from .model import DensityModel

__all__ = ["PreparedModelEvents"]


class PreparedModelEvents:
    """``N`` observed events of a :class:`~gmmpyro.DensityModel` with their θ-independent work done.

    Implements :class:`gmmpyro.protocols.PreparedEvents`. Made by :meth:`DensityModel.prepare`;
    the work is done under ``torch.no_grad`` (gradients flow to ``θ``, not to the network
    weights), so prepare again after training the model further.

    Attributes:
        model: the model the events were prepared for.
        events: the events, shape ``(N, d)``, in the model's dtype and device.
        n_events: ``N``.
        inside: ``(N,)`` whether each event lies inside the observables' support (events
            outside score ``-inf``); ``all_inside`` whether all do.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> toy = ToyModel()
        >>> prepared = toy.prepare(toy.sample(5, [0.0, 0.0], seed=0))
        >>> prepared.log_prob(torch.zeros(3, 2)).shape  # (*b, N)
        torch.Size([3, 5])
    """

    def __init__(self, model: DensityModel, x: torch.Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"prepare expects events of shape (N, d), got {tuple(x.shape)}")
        self.model = model
        self.events = x.detach()
        self.n_events = int(x.shape[0])
        with torch.no_grad():
            self._u, self._log_det, self.inside = model.to_latent(self.events)  # N d ; N ; N
            features = model.event_features(self._u)
        self.all_inside = bool(self.inside.all())
        self._stacked = None
        stacked = {"lowrank": StackedLowRank, "amplitudes": StackedAmplitudes, "film": StackedFilm}.get(
            model.config.design
        )
        if stacked is not None and not any(o.discrete for o in model.observables):
            truncated = [model.observables[c].bounded and model.config.truncate for c in model.order]
            d = len(model.observables)
            members = [slice(m * d, (m + 1) * d) for m in range(model.ensemble)]
            kernels = {} if model.kernels is None else {"kernels": model.kernels}  # set by compile()
            self._stacked = [
                stacked(model.networks[m], features[m], self._u, truncated, model.latent_range, **kernels)
                for m in members
            ]
        else:
            self._event_features = [
                net.event_layout(f.detach()) if f is not None else None
                for net, f in zip(model.networks, features, strict=True)
            ]

    def log_prob(self, theta) -> torch.Tensor:
        """Per-event log densities at ``theta (*b, k)``, shape ``(*b, N)``; differentiable in ``theta``."""
        members = self._member_log_probs(theta)
        if len(members) == 1:
            return members[0]
        return self.model.combine_members(torch.stack(members))

    def member_log_prob(self, theta) -> torch.Tensor:
        """Each ensemble member's per-event log densities at ``theta (*b, k)``, shape ``(K, *b, N)``.

        See :meth:`gmmpyro.DensityModel.member_log_prob`; ``member_log_prob(θ).sum(-1).std(0)``
        is the spread of the dataset's log-likelihood over the members.
        """
        return torch.stack(self._member_log_probs(theta))

    def _member_log_probs(self, theta) -> list[torch.Tensor]:
        """``K`` tensors ``(*b, N)``: the members' log densities (a list, so that one member needs no stacking)."""
        model = self.model
        theta = model.check_theta(theta)
        if self._stacked is not None:
            flat = model.scale_theta(theta).reshape(-1, theta.shape[-1])  # B k
            shape = (*theta.shape[:-1], self.n_events)
            latent = [s.log_prob(flat).reshape(shape) for s in self._stacked]  # K x (b N)
        else:
            theta_features = [f.unsqueeze(-2) for f in model.theta_features(model.scale_theta(theta))]  # b 1 W
            latent = model.member_totals(model.factor_log_probs(self._u, theta_features, self._event_features))
            latent = list(latent.unbind(0))
        totals = [member + self._log_det for member in latent]
        if self.all_inside:
            return totals
        return [torch.where(self.inside, t, torch.full_like(t, -float("inf"))) for t in totals]

    def __repr__(self) -> str:
        return f"PreparedModelEvents(n_events={self.n_events}, observables={[o.name for o in self.model.observables]})"
