"""``DensityModel``: the latent projection plus the autoregressive Gaussian-mixture networks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from torch import nn

from .compiled_amplitudes import AmplitudeKernels
from .compiled_film import FilmKernels
from .exceptions import OutOfRangeWarning, range_warnings_enabled, warn
from .film import FilmMixtureNetwork
from .lowrank import AmplitudeMixtureNetwork, LowRankCategoricalNetwork, LowRankMixtureNetwork
from .mixture import mixture_log_prob, sample_mixture
from .networks import CategoricalNetwork, GaussianMixtureNetwork, NetworkConfig
from .observables import Observable, as_events, real_tensor
from .prepared import PreparedModelEvents
from .projection import LatentProjection

if TYPE_CHECKING:
    from .distribution import GMMDistribution
    from .training import TrainingConfig, TrainingHistory

__all__ = ["DensityModel", "MixtureComponents"]

_KERNELS = {"amplitudes": AmplitudeKernels, "film": FilmKernels}

Space = Literal["data", "latent"]


class MixtureComponents(NamedTuple):
    """The Gaussian mixture of one factor in latent space, each field ``(*, N_G)``."""

    weights: torch.Tensor
    means: torch.Tensor
    widths: torch.Tensor


class DensityModel(nn.Module):
    """Conditional density ``p(x | θ)``: an autoregressive Gaussian mixture on a latent space.

    .. math:: \\log p(x|θ) = \\sum_i \\log p_i(u_i \\mid u_{<i}, θ) + \\log|\\det ∂h/∂x|, \\quad u = h(x)

    Each ``p_i`` is a mixture of ``N_G`` Gaussians (truncated to the latent range for bounded
    observables) whose amplitudes, means and widths come from a network of ``θ`` and
    ``u_<i``; discrete observables get a categorical network. Train it with
    :meth:`fit`; then :meth:`log_prob`, :meth:`sample`, :meth:`distribution` (a Pyro
    distribution) and :meth:`save` / :meth:`load`.

    Reference: S. Menary, D. Price, "Learning to discover: expressive Gaussian mixture models for
    multi-dimensional simulation and parameter inference in the physical sciences", Section 3.

    Arguments:
        observables: the ``d`` observables (``Observable`` objects), column order of ``x``.
        params: the ``k`` parameter names, column order of ``theta``.
        config: network constants.
        order: autoregressive order, as observable names or column indices (default: as given).
        ensemble: number of members ``K``. With ``K > 1`` the model holds ``K`` sets of
            factor networks, started from different random weights and trained together
            (:attr:`TrainingConfig.bootstrap` also gives each its own bootstrap weights), and
            its density is their equal mixture,
            ``log p(x|θ) = logsumexp_m log p_m(x|θ) - log K``;
            :meth:`member_log_prob` gives each member's value and :meth:`member` one member
            as a model of its own. Their spread measures the model's uncertainty.
        device, dtype: where and in which precision the networks run.

    Example:
        >>> import gmmpyro
        >>> toy = gmmpyro.toy.ToyModel()
        >>> x, theta = toy.grid_dataset(200, grid=[[0.0, 0.0], [1.0, 1.0]], seed=0)
        >>> model = DensityModel(toy.observables, ["cx", "cy"], config=NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2))
        >>> history = model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=2), progress=False)
        >>> model.log_prob(x[:3], torch.tensor([0.5, 0.5])).shape
        torch.Size([3])
        >>> model.sample(5, torch.zeros(3, 2), seed=0).shape
        torch.Size([5, 3, 4])
    """

    def __init__(
        self,
        observables: Sequence[Observable],
        params: Sequence[str],
        config: NetworkConfig | None = None,
        order: Sequence[str | int] | None = None,
        ensemble: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if isinstance(ensemble, bool) or not isinstance(ensemble, numbers.Integral) or ensemble < 1:
            raise ValueError(f"ensemble must be an integer >= 1 (the number of members), got {ensemble!r}")
        self.ensemble = int(ensemble)
        self.observables = tuple(observables)
        if not self.observables or not all(isinstance(o, Observable) for o in self.observables):
            raise TypeError("observables must be a non-empty sequence of gmmpyro.Observable")
        names = [o.name for o in self.observables]
        if len(set(names)) != len(names):
            raise ValueError(f"observable names must be unique, got {names}")
        if isinstance(params, str):
            raise TypeError(f"params must be a sequence of names, got the string {params!r}; write [{params!r}]")
        self.params = tuple(params)
        if not self.params or not all(isinstance(p, str) and p for p in self.params):
            raise ValueError(f"params must be a non-empty sequence of names, got {params!r}")
        if len(set(self.params)) != len(self.params):
            raise ValueError(f"parameter names must be unique, got {list(self.params)}")
        self.config = config if config is not None else NetworkConfig()
        if not isinstance(self.config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig, got {type(self.config).__name__}")
        self.order = self._resolve_order(order)
        self.latent_range = (-5.0, 5.0)
        k = len(self.params)
        self.networks = nn.ModuleList(
            _factor_network(
                self.config,
                k,
                position,
                self.observables[column].n_categories if self.observables[column].discrete else None,
                self.latent_range,
            )
            for _member in range(self.ensemble)
            for position, column in enumerate(self.order)
        )
        self.register_buffer("theta_low", torch.full((k,), float("nan"), dtype=torch.float64))
        self.register_buffer("theta_high", torch.full((k,), float("nan"), dtype=torch.float64))
        object.__setattr__(self, "projection", None)
        self.history: TrainingHistory | None = None
        self.kernels: AmplitudeKernels | FilmKernels | None = None
        self.to(device=device, dtype=dtype)

    def _resolve_order(self, order: Sequence[str | int] | None) -> tuple[int, ...]:
        d = len(self.observables)
        if order is None:
            return tuple(range(d))
        names = [o.name for o in self.observables]
        resolved = []
        for entry in order:
            if isinstance(entry, str):
                if entry not in names:
                    raise ValueError(f"order names unknown observable {entry!r}; observables are {names}")
                resolved.append(names.index(entry))
            else:
                resolved.append(int(entry))
        if sorted(resolved) != list(range(d)):
            raise ValueError(f"order must be a permutation of the {d} observables {names}, got {list(order)}")
        return tuple(resolved)

    @property
    def device(self) -> torch.device:
        """The device of the networks."""
        return self.theta_low.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the networks."""
        return next(self.networks.parameters()).dtype

    @property
    def is_fitted(self) -> bool:
        """Whether the model has been trained (or loaded)."""
        return self.projection is not None

    @property
    def theta_bounds(self) -> torch.Tensor:
        """The training range of the parameters, shape ``(k, 2)``."""
        self._require_fitted()
        return torch.stack([self.theta_low, self.theta_high], -1).to(self.dtype)

    @property
    def n_parameters(self) -> int:
        """Number of trainable network parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _apply(self, fn, recurse: bool = True):
        # the θ range and the projection's knot tables stay float64 on every .to(dtype); the
        # projection is deliberately not a submodule, so only its device follows the networks
        low, high = self.theta_low, self.theta_high
        super()._apply(fn, recurse)
        device = next(self.networks.parameters()).device
        self.theta_low = low.to(device=device)
        self.theta_high = high.to(device=device)
        if self.projection is not None:
            self.projection.to(device=device)
        return self

    def set_projection(self, projection: LatentProjection) -> None:
        """Install a fitted projection (done by :meth:`fit` and :meth:`load`)."""
        if [o.name for o in projection.observables] != [o.name for o in self.observables]:
            raise ValueError("the projection was built for other observables")
        object.__setattr__(self, "projection", projection.to(device=self.device))

    def set_theta_range(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Set the training range of θ, used to rescale network inputs; shapes ``(k,)``."""
        low = torch.as_tensor(low, dtype=torch.float64, device=self.device)
        high = torch.as_tensor(high, dtype=torch.float64, device=self.device)
        if low.shape != self.theta_low.shape or high.shape != self.theta_high.shape or not (high > low).all():
            raise ValueError(f"theta range must be two ({len(self.params)},) tensors with high > low")
        self.theta_low, self.theta_high = low, high

    def _require_fitted(self) -> None:
        if self.projection is None:
            raise RuntimeError("the model is not trained yet: call fit(...) or DensityModel.load(...)")

    # ----------------------------------------------------------------------------- inputs

    def _as_tensor(self, value, what: str) -> torch.Tensor:
        return real_tensor(value, dtype=self.dtype, device=self.device, what=what)

    def _as_events(self, x, space: Space = "data") -> torch.Tensor:
        if space == "latent":
            return self._as_tensor(x, "x")
        return as_events(x, self.observables, dtype=self.dtype, device=self.device)

    def check_theta(self, theta) -> torch.Tensor:
        """Validate ``theta (*, k)``: shape and finiteness raise, outside the training range warns.

        The warning is skipped inside :func:`gmmpyro.exceptions.results_checked_by_caller`.
        """
        dtype = self.dtype  # looked up once: the property walks the modules (~10 µs)
        theta = real_tensor(theta, dtype=dtype, device=self.device, what="theta")
        k = len(self.params)
        if theta.dim() == 0 or theta.shape[-1] != k:
            raise ValueError(
                f"theta must have shape (..., {k}) for params {list(self.params)}, got {tuple(theta.shape)}"
            )
        detached = theta.detach()
        # a finite sum is two operations; the elementwise test runs only where the sum is not (or overflows)
        if not math.isfinite(detached.sum()) and not torch.isfinite(detached).all():
            raise ValueError("theta contains NaN or inf")
        if self.projection is not None and range_warnings_enabled():
            low, high = self.theta_low.to(dtype), self.theta_high.to(dtype)
            outside = (detached < low) | (detached > high)
            if outside.any():
                names = [p for p, o in zip(self.params, outside.reshape(-1, k).any(0).tolist(), strict=True) if o]
                warn(
                    f"theta outside the training range for {names}: the model extrapolates there",
                    OutOfRangeWarning,
                )
        return theta

    def scale_theta(self, theta: torch.Tensor) -> torch.Tensor:
        """``θ (*, k)`` mapped linearly from the training range onto the networks' inputs ``[-2, 2]``."""
        dtype = theta.dtype if theta.is_floating_point() else self.dtype
        low, high = self.theta_low.to(dtype), self.theta_high.to(dtype)
        return 4.0 * (theta - low) / (high - low) - 2.0

    def _scale_latent(self, u_ordered: torch.Tensor) -> torch.Tensor:
        """Latent values (in autoregressive order) rescaled onto ``[-2, 2]`` as network inputs."""
        u_min, u_max = self.latent_range
        scaled = []
        for position, column in enumerate(self.order):
            obs = self.observables[column]
            lo, hi = obs.bounds if obs.discrete else (u_min, u_max)
            scaled.append(4.0 * (u_ordered[..., position] - lo) / (hi - lo) - 2.0)
        return torch.stack(scaled, -1)

    def to_latent(self, x, space: Space = "data") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Events in the networks' latent space, in autoregressive order.

        Arguments:
            x: events, shape ``(*, d)`` (data space, or latent values with ``space="latent"``).
            space: ``"data"`` or ``"latent"``.

        Returns:
            ``(u (*, d), log|det ∂h/∂x| (*), inside (*))``: latent values with columns in
            :attr:`order`, the projection's log-Jacobian (0 in latent space), and whether each
            event lies inside the support (events outside are replaced by an inside point).
        """
        self._require_fitted()
        if space not in ("data", "latent"):
            raise ValueError(f"space must be 'data' or 'latent', got {space!r}")
        x = self._as_events(x, space)
        d = len(self.observables)
        if x.dim() == 0 or x.shape[-1] != d:
            raise ValueError(
                f"x must have shape (..., {d}) for observables {[o.name for o in self.observables]}, "
                f"got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        inside = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        safe = []
        for i, obs in enumerate(self.observables):
            column = x[..., i]
            if (space == "data" and obs.bounds is not None) or obs.discrete:
                lo, hi = obs.bounds
            elif obs.bounded:
                lo, hi = self.latent_range
            else:
                safe.append(column)
                continue
            ok = (column >= lo) & (column <= hi)
            if obs.discrete:
                ok &= column == torch.round(column)
            inside &= ok
            safe.append(torch.where(ok, column, torch.full_like(column, lo)))
        safe = torch.stack(safe, -1)
        if space == "data":
            u, log_det = self.projection.forward_and_log_det(safe, check=False)
        else:
            u, log_det = safe, torch.zeros_like(safe[..., 0])
        return u[..., list(self.order)], log_det, inside

    # ------------------------------------------------------------------------ evaluation

    def event_features(self, u_ordered: torch.Tensor, positions: Sequence[int] | None = None) -> list:
        """Each factor network's event-dependent input features, done once per event.

        Arguments:
            u_ordered: latent values in autoregressive order, shape ``(*, d)`` (see :meth:`to_latent`).
            positions: the factors to compute (default all); the others are ``None``.

        Returns:
            One entry per network (``K·d``, member by member): a tensor ``(*, W_i)``, or
            ``None`` for a first factor (no preceding observables) and networks not asked for.
        """
        scaled = self._scale_latent(u_ordered)
        wanted = range(len(self.networks)) if positions is None else positions
        d = len(self.observables)
        return [
            self.networks[p].event_part(scaled[..., : p % d]) if p in wanted else None
            for p in range(len(self.networks))
        ]

    def theta_features(self, theta_scaled: torch.Tensor, positions: Sequence[int] | None = None) -> list:
        """Each factor network's θ-dependent input features, done once per parameter point.

        Arguments:
            theta_scaled: parameters mapped by :meth:`scale_theta`, shape ``(*, k)``.
            positions: the factors to compute (default all); the others are ``None``.

        Returns:
            One entry per factor: a tensor ``(*, W_i)`` or ``None`` for factors not asked for.
        """
        wanted = range(len(self.networks)) if positions is None else positions
        return [net.theta_part(theta_scaled) if p in wanted else None for p, net in enumerate(self.networks)]

    def factor_log_probs(
        self,
        u_ordered: torch.Tensor,
        theta_features: Sequence[torch.Tensor | None],
        event_features: Sequence[torch.Tensor | None],
        positions: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Per-factor latent log densities ``log p_i(u_i | u_<i, θ)`` from the two kinds of features.

        Arguments:
            u_ordered: latent values in autoregressive order, shape ``(*x, d)``.
            theta_features: :meth:`theta_features` entries, each ``(*θ, W_i)``.
            event_features: :meth:`event_features` entries, each ``(*x, W_i)`` or ``None``.
            positions: the networks to score (default all ``K·d``; network ``m·d + i`` is
                member ``m``'s factor ``i``).

        Returns:
            Shape ``broadcast(*θ, *x) + (len(positions),)``.
        """
        positions = range(len(self.networks)) if positions is None else positions
        d = len(self.observables)
        out = []
        for position in positions:
            net, column = self.networks[position], self.order[position % d]
            obs = self.observables[column]
            theta_part, event_part = theta_features[position], event_features[position]
            u = u_ordered[..., position % d]
            if obs.discrete:
                log_probs = net.log_probs(theta_part, event_part)  # B n_cat
                index = (u - obs.bounds[0]).long()
                hit = nn.functional.one_hot(index, obs.n_categories).bool()
                out.append(torch.where(hit, log_probs, torch.zeros_like(log_probs)).sum(-1))
            else:
                bounds = self.latent_range if (obs.bounded and self.config.truncate) else None
                out.append(mixture_log_prob(u, *net.mixture(theta_part, event_part), bounds))
        shape = torch.broadcast_shapes(*(t.shape for t in out))
        return torch.stack([t.expand(shape) for t in out], -1)

    def log_prob(self, x, theta, space: Space = "data") -> torch.Tensor:
        """Log density of events given parameters.

        Arguments:
            x: events, shape ``(*, d)``; in data space or, with ``space="latent"``, latent values.
            theta: parameters, shape ``(*, k)``, broadcast against ``x``'s batch dimensions;
                may require grad.
            space: ``"data"`` for ``log p(x|θ)`` (with the projection's log-Jacobian) or
                ``"latent"`` for ``log p(u|θ)``.

        Returns:
            Shape ``broadcast(x.shape[:-1], theta.shape[:-1])``; ``-inf`` outside the support.

        Raises:
            ValueError: wrong shapes, NaN or inf.
        """
        return self.combine_members(self.member_log_prob(x, theta, space))

    def member_log_prob(self, x, theta, space: Space = "data") -> torch.Tensor:
        """Each ensemble member's log density (see :meth:`log_prob` for the arguments).

        The spread over the first dimension is the model's uncertainty: per event,
        ``member_log_prob(x, θ).std(0)``; per parameter point for a dataset ``x (N, d)``,
        ``member_log_prob(x, θ).sum(-1).std(0)``.

        Returns:
            Shape ``(K,) + broadcast(x.shape[:-1], theta.shape[:-1])``; ``K = 1`` for a
            single model.

        Example:
            >>> import gmmpyro
            >>> toy = gmmpyro.toy.ToyModel()
            >>> x, theta = toy.grid_dataset(100, grid=[[0.0, 0.0], [1.0, 1.0]], seed=0)
            >>> model = DensityModel(toy.observables, ["cx", "cy"], config=NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2),
            ...                      ensemble=3)
            >>> _ = model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=1), progress=False)
            >>> model.member_log_prob(x[:5], torch.tensor([0.5, 0.5])).shape
            torch.Size([3, 5])
        """
        x = self._as_events(x, space)
        theta = self.check_theta(theta)
        _check_broadcast(x, theta)
        u, log_det, inside = self.to_latent(x, space)
        factors = self.factor_log_probs(u, self.theta_features(self.scale_theta(theta)), self.event_features(u))
        total = self.member_totals(factors) + log_det
        return torch.where(inside, total, torch.full_like(total, -float("inf")))

    def member_totals(self, factors: torch.Tensor) -> torch.Tensor:
        """Per-network log densities ``(*, K·d)`` summed into each member's ``(K, *)``."""
        d = len(self.observables)
        return factors.unflatten(-1, (self.ensemble, d)).sum(-1).movedim(-1, 0)

    def combine_members(self, member_log_probs: torch.Tensor) -> torch.Tensor:
        """The ensemble's log density from its members' ``(K, *)``: ``logsumexp - log K``, shape ``(*)``."""
        if self.ensemble == 1:
            return member_log_probs[0]
        return torch.logsumexp(member_log_probs, 0) - math.log(self.ensemble)

    def member(self, index: int) -> DensityModel:
        """Member ``index`` of an ensemble as a model of its own, sharing its networks, projection and θ range.

        Use it for anything done per member: a profile scan or posterior each, to see how
        much intervals move with the model's uncertainty. The view shares the member's
        networks (training either trains both), but takes the ensemble's θ range, projection
        and device as they are now: after the ensemble is trained again or moved, take a
        fresh view; move the ensemble, not a view.

        Example:
            >>> model = DensityModel([Observable("x")], ["a"], ensemble=2)
            >>> model.member(1).ensemble
            1
        """
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < self.ensemble:
            raise ValueError(f"member index must be an integer in [0, {self.ensemble}), got {index!r}")
        d = len(self.observables)
        # the view's own networks are drawn on the CPU, moved to the meta device (freed) and replaced by the
        # member's; fork_rng keeps that draw out of the global random stream (building under
        # `with torch.device("meta")` measured twice as slow: 30 against 16 ms for the paper network)
        with torch.random.fork_rng(devices=[]):
            view = DensityModel(self.observables, self.params, self.config, self.order, device="meta")
        view.networks = nn.ModuleList(self.networks[int(index) * d : (int(index) + 1) * d])
        view.theta_low, view.theta_high = self.theta_low, self.theta_high
        view.kernels = self.kernels
        if self.projection is not None:
            view.set_projection(self.projection)
        return view

    def compile(self, **options) -> None:
        """Compile the θ path of events prepared from now on with ``torch.compile`` (``"amplitudes"``, ``"film"``).

        Fits, scans, posteriors and :meth:`prepare` then score the events at each θ, value and
        per-event θ-Jacobian together, in a few fused kernels instead of ~200 small tensor
        operations (:mod:`gmmpyro.compiled_amplitudes`, :mod:`gmmpyro.compiled_film`); where
        its usual case does not hold, and for second derivatives, the uncompiled path takes
        over. The first evaluation of each shape compiles (seconds to a minute); it pays where
        one set of events is scored at thousands of θ (NUTS, scans, coverage toys). On the CPU ``torch.compile`` needs a
        C++ compiler, on a GPU Triton. With the default ``dynamic=None`` a second event count or
        batch size compiles once more, for all sizes; torch's limit of recompilations
        (``torch._dynamo.config.recompile_limit``) holds for all compiled models of a process
        together, beyond it the expression runs uncompiled. Unlike ``nn.Module.compile`` it
        leaves the networks as they are (training is not compiled). Load the model again to
        undo it.

        Arguments:
            options: passed to ``torch.compile`` (``dynamic``, ``mode``, ``backend``, ...).

        Example:
            >>> from gmmpyro import NetworkConfig
            >>> model = DensityModel([Observable("x")], ["a"], NetworkConfig(design="amplitudes"))
            >>> model.compile()
            >>> model.kernels
            AmplitudeKernels()
        """
        discrete = any(o.discrete for o in self.observables)
        if self.config.design not in _KERNELS or discrete:
            raise ValueError(
                "compile() speeds up the 'amplitudes' and 'film' designs with continuous observables only; this "
                "model has "
                f"design={self.config.design!r}" + (" and discrete observables" if discrete else "")
            )
        self.kernels = _KERNELS[self.config.design](**options)

    def prepare(self, x) -> PreparedModelEvents:
        """Do the θ-independent work for a fixed set of events once (projection, event features).

        Inference scores the same events at many ``θ``: pass the result to
        :meth:`distribution` (``prepared=``) or use its ``log_prob`` directly. Fits, scans and
        :func:`gmmpyro.bayes.sample_posterior` prepare their events themselves.

        Arguments:
            x: observed events, shape ``(N, d)``.

        Returns:
            A :class:`~gmmpyro.prepared.PreparedModelEvents` whose ``log_prob(theta (*b, k))``
            is ``(*b, N)``.
        """
        return PreparedModelEvents(self, self._as_events(x))

    def sample(self, n: int, theta, seed: int | None = None) -> torch.Tensor:
        """Draw events, one autoregressive factor at a time.

        An ensemble draws each event from a member chosen uniformly at random; each member
        draws only the events it was chosen for, so this costs what a single model's draw does.

        Arguments:
            n: number of events per parameter point.
            theta: parameters, shape ``(*batch, k)``.
            seed: seed of a private random stream (``None``: torch's global stream).

        Returns:
            Data-space events, shape ``(n, *batch, d)``, inside the observables' bounds.
        """
        self._require_fitted()
        if int(n) < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        theta = self.check_theta(theta)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        with torch.no_grad():
            if self.ensemble == 1:
                u = self._sample_latent(0, int(n), theta, generator)
            else:
                u = self._sample_members(int(n), theta, generator)
            u_columns = u[..., list(_inverse_permutation(self.order))]
            return self.projection.inverse(u_columns)

    def _sample_members(self, n: int, theta: torch.Tensor, generator) -> torch.Tensor:
        """``n`` draws of an ensemble at ``theta (*batch, k)``, each from a member chosen uniformly: ``(n, *batch, d)``.

        The members are chosen first; each then draws one event at each of its events' ``θ``.
        """
        batch = theta.shape[:-1]
        chosen = torch.randint(self.ensemble, (n, *batch), generator=generator, device=self.device)
        rows = theta.expand(n, *theta.shape)  # n *batch k
        u = torch.empty(n, *batch, len(self.observables), dtype=self.dtype, device=self.device)
        for member in range(self.ensemble):
            mine = chosen == member
            u[mine] = self._sample_latent(member, 1, rows[mine], generator, shown=theta)[0]
        return u

    def _sample_latent(
        self, member: int, n: int, theta: torch.Tensor, generator, shown: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` draws of one member at ``theta (*batch, k)``: latent values in order, ``(n, *batch, d)``.

        ``shown``: the θ an error message names (default ``theta``; an ensemble's member draws at
        one row per event).
        """
        shown = theta if shown is None else shown
        d = len(self.observables)
        networks = self.networks[member * d : (member + 1) * d]
        batch = theta.shape[:-1]
        theta_scaled = self.scale_theta(theta)
        u = torch.zeros(n, *batch, d, dtype=self.dtype, device=self.device)
        for position, net in enumerate(networks):
            obs = self.observables[self.order[position]]
            theta_part = net.theta_part(theta_scaled).expand(n, *batch, -1)
            event_part = net.event_part(self._scale_latent(u)[..., :position])
            if obs.discrete:
                probs = net.log_probs(theta_part, event_part).exp().reshape(-1, obs.n_categories)
                self._require_finite(probs, obs, shown)
                draw = torch.multinomial(probs, 1, generator=generator).reshape(n, *batch)
                u[..., position] = draw.to(self.dtype) + obs.bounds[0]
            else:
                bounds = self.latent_range if (obs.bounded and self.config.truncate) else None
                mixture = net.mixture(theta_part, event_part)
                self._require_finite(torch.stack(torch.broadcast_tensors(*mixture)), obs, shown)
                u[..., position] = sample_mixture(*mixture, bounds, generator)
        return u

    def _require_finite(self, values: torch.Tensor, obs: Observable, theta: torch.Tensor) -> None:
        """Sampling far outside the training range can overflow the network: say so instead of drawing garbage."""
        if not bool(torch.isfinite(values).all()):
            ranges = ", ".join(
                f"{p} [{lo:g}, {hi:g}]"
                for p, lo, hi in zip(self.params, self.theta_low.tolist(), self.theta_high.tolist(), strict=True)
            )
            points = theta.detach().reshape(-1, len(self.params))
            where = f"theta {points[0].tolist()}" if len(points) == 1 else f"one of {len(points)} theta points"
            raise ValueError(
                f"cannot sample: the mixture of observable {obs.name!r} is not finite at {where}, "
                f"far outside the training range ({ranges})"
            )

    def components(self, theta, index: str | int, u_prev=None) -> MixtureComponents:
        """The Gaussian mixture of one observable's factor, in latent space (for plots).

        An ensemble's factor is exactly a mixture of its members' components, ``K·N_G`` of them:
        member ``m``'s weights times ``1/K`` for the first factor, and for a later one times the
        member's share of the density of ``u_prev``, ``π_m ∝ p_m(u_prev | θ)``.

        Arguments:
            theta: parameters, shape ``(*, k)``.
            index: the observable, by name or column.
            u_prev: latent values of the observables before it in the autoregressive order,
                shape ``(*, i)``; not needed for the first one.

        Returns:
            ``MixtureComponents(weights, means, widths)``, each ``(*, K·N_G)``.
        """
        self._require_fitted()
        names = [o.name for o in self.observables]
        column = names.index(index) if isinstance(index, str) and index in names else index
        if not isinstance(column, int) or not 0 <= column < len(names):
            raise ValueError(f"unknown observable {index!r}; observables are {names}")
        if self.observables[column].discrete:
            raise ValueError(f"observable {names[column]!r} is discrete: it has no Gaussian components")
        position = self.order.index(column)
        theta = self.check_theta(theta)
        d = len(self.observables)
        padded = torch.zeros(d, dtype=self.dtype, device=self.device)
        if position > 0:
            if u_prev is None:
                raise ValueError(
                    f"observable {names[column]!r} is conditional: give u_prev of shape (..., {position})"
                )
            u_prev = self._as_tensor(u_prev, "u_prev")
            if u_prev.shape[-1] != position:
                raise ValueError(f"u_prev must have shape (..., {position}), got {tuple(u_prev.shape)}")
            padded = torch.zeros(*u_prev.shape[:-1], d, dtype=self.dtype, device=self.device)
            padded[..., :position] = u_prev
        theta_scaled = self.scale_theta(theta)
        nets = [self.networks[m * d + position] for m in range(self.ensemble)]
        scaled_prev = self._scale_latent(padded)[..., :position]
        parts = [net.mixture(net.theta_part(theta_scaled), net.event_part(scaled_prev)) for net in nets]
        log_weights, means, widths = (
            torch.cat(torch.broadcast_tensors(*tensors), -1) for tensors in zip(*parts, strict=True)
        )
        if self.ensemble > 1:
            log_weights = log_weights + self._member_shares(theta_scaled, padded, position).repeat_interleave(
                log_weights.shape[-1] // self.ensemble, -1
            )
        return MixtureComponents(log_weights.exp(), means, widths)

    def _member_shares(self, theta_scaled: torch.Tensor, u_ordered: torch.Tensor, position: int) -> torch.Tensor:
        """``log π_m``: each member's share of the density of the first ``position`` latent values, ``(*, K)``."""
        d = len(self.observables)
        if position == 0:
            return torch.full((self.ensemble,), -math.log(self.ensemble), dtype=self.dtype, device=self.device)
        positions = [m * d + j for m in range(self.ensemble) for j in range(position)]
        factors = self.factor_log_probs(
            u_ordered,
            self.theta_features(theta_scaled, positions),
            self.event_features(u_ordered, positions),
            positions,
        )  # * K·position
        return torch.log_softmax(factors.unflatten(-1, (self.ensemble, position)).sum(-1), -1)

    def distribution(self, theta, *, prepared=None, validate_args: bool | None = None) -> GMMDistribution:
        """This model at ``theta (*batch, k)`` as a Pyro distribution (see :class:`GMMDistribution`).

        With ``prepared=model.prepare(x_obs)`` the distribution scores exactly those events
        on the fast path (θ-independent work done once); without it, any events directly.
        """
        from .distribution import GMMDistribution

        return GMMDistribution(self, theta, prepared=prepared, validate_args=validate_args)

    # -------------------------------------------------------------------------- training

    def fit(
        self,
        x,
        theta=None,
        weights=None,
        *,
        reference=None,
        config: TrainingConfig | None = None,
        progress: bool = True,
        callback=None,
        checkpoint_dir=None,
        score=None,
        score_weight: float | None = None,
    ) -> TrainingHistory:
        """Train by weighted maximum likelihood (and joint score); see :func:`~gmmpyro.training.train`."""
        from .training import train

        return train(
            self,
            x,
            theta,
            weights,
            reference=reference,
            config=config,
            progress=progress,
            callback=callback,
            checkpoint_dir=checkpoint_dir,
            score=score,
            score_weight=score_weight,
        )

    # ---------------------------------------------------------------------- persistence

    def save(self, path) -> None:
        """Write the model to one safetensors file (tensors + JSON header; no pickle).

        Raises:
            ValueError: the file's directory does not exist (nothing is written).
        """
        from .modelfile import save_model

        self._require_fitted()
        save_model(self, path)

    @classmethod
    def load(cls, path, map_location: torch.device | str | None = None) -> DensityModel:
        """Read a model written by :meth:`save` onto ``map_location`` (default CPU).

        Raises:
            ValueError: naming the file, when it is not a gmmpyro model, is of another format
                version, or its header or tensors are inconsistent.
        """
        from .modelfile import load_model

        return load_model(cls, path, map_location)

    def extra_repr(self) -> str:
        return (
            f"observables={[o.name for o in self.observables]}, params={list(self.params)}, "
            f"order={list(self.order)}, ensemble={self.ensemble}, n_parameters={self.n_parameters}, "
            f"fitted={self.is_fitted}"
        )


def _factor_network(
    config: NetworkConfig, n_theta: int, position: int, n_categories: int | None = None, latent_range=(-5.0, 5.0)
) -> nn.Module:
    """The network of the factor at ``position`` of the autoregressive order, in ``config.design``.

    Arguments:
        config: the network constants.
        n_theta: number of parameters ``k``.
        position: number of preceding observables ``i``.
        n_categories: number of values of a discrete observable, ``None`` for a continuous one.
        latent_range: ``(u_min, u_max)`` of continuous observables.

    """
    if n_categories is not None:
        kind = CategoricalNetwork if config.design == "paper" else LowRankCategoricalNetwork
        return kind(n_theta, position, n_categories, config)
    if config.design == "paper":
        kind = GaussianMixtureNetwork
    elif config.design == "film":
        kind = FilmMixtureNetwork
    elif config.design == "amplitudes" and position > 0:  # the first factor has no events to cache: low-rank
        kind = AmplitudeMixtureNetwork
    else:
        kind = LowRankMixtureNetwork
    return kind(n_theta, position, config, latent_range)


def _inverse_permutation(order: Sequence[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, column in enumerate(order):
        inverse[column] = position
    return inverse


def _check_broadcast(x: torch.Tensor, theta: torch.Tensor) -> None:
    """A ``ValueError`` when the batch shapes of events and parameters do not broadcast."""
    try:
        torch.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"the batch shapes of x {tuple(x.shape[:-1])} and theta {tuple(theta.shape[:-1])} do not broadcast; "
            "to score every event at every θ add a dimension: theta[..., None, :]"
        ) from None
