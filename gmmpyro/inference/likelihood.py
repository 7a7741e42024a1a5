"""The log-likelihood of a fixed set of observed events as a function of named parameters.

One object, :class:`Likelihood`, shared by the frequentist side (:mod:`gmmpyro.inference.fit`,
:mod:`gmmpyro.inference.scan`) and usable by the Bayesian side: it prepares the observed
events once (``model.prepare``) and then scores batches of parameter points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

from ..exceptions import OutOfRangeWarning, results_checked_by_caller, warn
from ..observables import as_events, check_events

__all__ = ["Likelihood"]

# θ points × events per model call. CPU: small enough for the intermediates to stay in cache (2**17 was
# 2-3× slower per point, 2**14 up to 1.4×); other devices: large, since a call costs its kernel launches
# whatever its size
_MAX_ELEMENTS_CPU = 2**13
_MAX_ELEMENTS = 2**17


class Likelihood:
    r"""``ln L(θ)`` of observed events under a conditional density, batched over ``θ``.

    .. math::
        \ln L(θ) = \sum_{i=1}^N w_i \ln p(x_i | θ) + \sum_c \ln π_c(θ_c) + \sum_t t(θ)

    with per-event weights ``w_i``, constraint terms ``π_c`` (e.g. a unit Gaussian on a
    nuisance parameter, the auxiliary measurement that constrains it) and extra terms ``t``
    such as the Poisson term of the extended likelihood
    (:class:`~gmmpyro.inference.terms.PoissonTerm`).

    The θ-independent work on the events is done once, by ``model.prepare(x_obs)``; every
    evaluation then scores a batch of parameter points, split into chunks of at most
    ``chunk_size`` points per model call to bound memory. Evaluations do not warn about ``θ``
    outside the trained range (a fit's steps or a chain may pass there); check the results
    with :meth:`check_range`, as ``fit``, ``scan`` and ``sample_posterior`` do.

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity`.
        x_obs: observed events, shape ``(N, d)``; converted to the model's device and dtype.
        weights: per-event weights, shape ``(N,)``, multiplying the per-event log densities.
        constraints: ``{name: distribution}`` whose ``log_prob(θ[name])`` joins ``ln L``; a
            tuple of names as key gives a joint distribution with event shape ``(len(key),)``.
            Any ``torch.distributions.Distribution`` (Pyro's included); create it on the
            model's device (Python-number parameters work on any device).
        extra_terms: callables ``term(theta (*batch, k)) -> (*batch)`` added to ``ln L``.
        chunk_size: most ``θ`` points per model call; default ``2**13 // N`` on the CPU,
            ``2**17 // N`` on other devices.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> model = ToyModel(x3_shift=0.3)
        >>> x = model.sample(50, [0.5, 0.0, 0.0], seed=0)  # N d
        >>> lik = Likelihood(model, x, constraints={"nu": torch.distributions.Normal(0.0, 1.0)})
        >>> lik.param_names
        ('cx', 'cy', 'nu')
        >>> theta = lik.theta_from({"cx": torch.linspace(-1, 1, 5), "cy": 0.0, "nu": 0.0})  # G k
        >>> lik.log_likelihood(theta).shape, lik.per_event(theta).shape  # G ; G N
        (torch.Size([5]), torch.Size([5, 50]))
    """

    def __init__(
        self,
        model,
        x_obs: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        constraints: Mapping[str | tuple[str, ...], torch.distributions.Distribution] | None = None,
        extra_terms: Iterable[Callable[[torch.Tensor], torch.Tensor]] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.model = model
        self.param_names: tuple[str, ...] = tuple(model.params)
        self.device = torch.device(model.device)
        self.dtype = model.dtype
        x = as_events(x_obs, model.observables, dtype=self.dtype, device=self.device, what="x_obs")
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"x_obs must have shape (N, d) with N >= 1, got {tuple(x.shape)}")
        check_events(x, model.observables, what="x_obs")
        self.x_obs = x
        self.n_events = int(x.shape[0])
        self.prepared = model.prepare(x)

        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
            if w.shape != (self.n_events,):
                raise ValueError(f"weights must have shape ({self.n_events},), got {tuple(w.shape)}")
            if not torch.isfinite(w).all():
                raise ValueError("weights contain NaN/inf")
            self.weights = w

        self.constraints: dict[tuple[str, ...], torch.distributions.Distribution] = {}
        for key, dist in (constraints or {}).items():
            names = (key,) if isinstance(key, str) else tuple(key)
            self.check_names(names, what="constraints")
            if not callable(getattr(dist, "log_prob", None)):
                raise TypeError(f"constraint on {key!r} must be a distribution with log_prob, got {dist!r}")
            self.constraints[names] = dist
        self._constraint_index = {
            names: torch.tensor([self.index(n) for n in names], device=self.device)
            for names in self.constraints
        }

        self.extra_terms = tuple(extra_terms or ())
        for term in self.extra_terms:
            if not callable(term):
                raise TypeError(f"extra_terms must be callables theta -> (*batch), got {term!r}")

        if chunk_size is None:
            elements = _MAX_ELEMENTS_CPU if self.device.type == "cpu" else _MAX_ELEMENTS
            chunk_size = max(1, elements // self.n_events)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.chunk_size = int(chunk_size)

    def __repr__(self) -> str:
        extras = []
        if self.weights is not None:
            extras.append("weighted")
        if self.constraints:
            extras.append("constraints on " + ", ".join("/".join(k) for k in self.constraints))
        if self.extra_terms:
            extras.append(f"{len(self.extra_terms)} extra term(s)")
        tail = f"; {'; '.join(extras)}" if extras else ""
        return f"Likelihood(params={self.param_names}, n_events={self.n_events}{tail})"

    # ----------------------------------------------------------------- names
    @property
    def n_params(self) -> int:
        """Number ``k`` of model parameters."""
        return len(self.param_names)

    def index(self, name: str) -> int:
        """Column of parameter ``name`` in ``θ``; a ``ValueError`` lists the valid names."""
        try:
            return self.param_names.index(name)
        except ValueError:
            raise ValueError(
                f"unknown parameter {name!r}; the model's parameters are {self.param_names}"
            ) from None

    def check_names(self, names: Iterable[str], *, what: str = "parameters") -> tuple[str, ...]:
        """Return ``names`` as a tuple, raising a ``ValueError`` for unknown or repeated names."""
        if isinstance(names, str):
            raise TypeError(f"{what} must be a sequence of names, got the string {names!r}; write [{names!r}]")
        names = tuple(names)
        unknown = [n for n in names if n not in self.param_names]
        if unknown:
            raise ValueError(
                f"{what}: unknown parameter(s) {unknown}; the model's parameters are {self.param_names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: repeated parameter names in {names}")
        return names

    def theta_from(self, values: Mapping[str, float | torch.Tensor]) -> torch.Tensor:
        """Stack named values into ``θ``, shape ``(*batch, k)``; values broadcast against each other.

        Every parameter must be given; a ``ValueError`` names the missing or unknown ones.
        """
        self.check_names(values, what="values")
        missing = [n for n in self.param_names if n not in values]
        if missing:
            raise ValueError(f"no value for parameter(s) {missing}")
        cols = [torch.as_tensor(values[n], dtype=self.dtype, device=self.device) for n in self.param_names]
        return torch.stack(torch.broadcast_tensors(*cols), -1)  # *batch k

    def to_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``θ (*batch, k)`` into ``{name: (*batch)}``."""
        self._check_theta(theta)
        return dict(zip(self.param_names, theta.unbind(-1), strict=True))

    def check_range(
        self, theta: torch.Tensor, *, what: str = "theta", names: Iterable[str] | None = None
    ) -> None:
        """Warn (:class:`~gmmpyro.exceptions.OutOfRangeWarning`) if ``θ`` leaves ``model.theta_bounds``.

        Arguments:
            theta: parameter points, shape ``(*batch, k)``.
            what: how to call them in the warning.
            names: check only these parameters (default: all).
        """
        bounds = torch.as_tensor(self.model.theta_bounds, dtype=self.dtype, device=self.device)  # k 2
        theta = theta.detach().reshape(-1, self.n_params)
        out = (theta < bounds[:, 0]) | (theta > bounds[:, 1])  # B k
        counts = out.sum(0).tolist()
        if names is not None:
            keep = set(self.check_names(names))
            counts = [c if n in keep else 0 for n, c in zip(self.param_names, counts, strict=True)]
        if any(counts):
            parts = [
                f"{n} ({c} point(s), range [{lo:g}, {hi:g}])"
                for n, c, (lo, hi) in zip(self.param_names, counts, bounds.tolist(), strict=True)
                if c
            ]
            warn(
                f"{what} outside the model's parameter range: {', '.join(parts)}",
                OutOfRangeWarning,
            )

    # ----------------------------------------------------------------- evaluation
    def _check_theta(self, theta: torch.Tensor) -> None:
        if not isinstance(theta, torch.Tensor) or theta.dim() == 0 or theta.shape[-1] != self.n_params:
            shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise ValueError(
                f"theta must be a tensor of shape (..., {self.n_params}) for {self.param_names}, got {shape}"
            )

    def _scores(self, theta: torch.Tensor) -> torch.Tensor:
        """``ln p(x_i | θ)`` of one chunk ``(b, k)`` → ``(b, N)``.

        Intermediate points of a fit, a scan or a chain may leave the trained range; the model's
        per-call warning is silenced here and the results are checked once (:meth:`check_range`).
        """
        with results_checked_by_caller():
            return self.prepared.log_prob(theta)

    def _chunks(self, theta: torch.Tensor) -> Sequence[torch.Tensor]:
        """``θ`` as chunks of at most ``chunk_size`` points, of equal sizes (no small remainder)."""
        flat = theta.reshape(-1, self.n_params)  # B k
        return flat.tensor_split(max(1, -(-flat.shape[0] // self.chunk_size)))

    def per_event(self, theta: torch.Tensor, *, weighted: bool = True) -> torch.Tensor:
        """Per-event log-likelihoods ``w_i ln p(x_i | θ)``, shape ``(*batch, N)``.

        Constraint and extra terms are not included (they are not per event). With
        ``weighted=False`` the weights are left out: ``ln p(x_i | θ)`` (e.g. for LOO).
        """
        self._check_theta(theta)
        out = torch.cat([self._scores(c) for c in self._chunks(theta)])  # B N
        if weighted and self.weights is not None:
            out = out * self.weights
        return out.reshape(*theta.shape[:-1], self.n_events)

    def constraint_log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """Sum of the constraint terms ``Σ ln π_c(θ_c)``, shape ``(*batch)``."""
        self._check_theta(theta)
        total = torch.zeros(theta.shape[:-1], dtype=self.dtype, device=self.device)
        for names, dist in self.constraints.items():
            idx = self._constraint_index[names]
            value = theta[..., idx[0]] if len(names) == 1 else theta.index_select(-1, idx)
            total = total + dist.log_prob(value).to(self.dtype)
        return total

    def log_likelihood(self, theta: torch.Tensor) -> torch.Tensor:
        """``ln L(θ)`` including constraint and extra terms, shape ``(*batch)``; differentiable."""
        self._check_theta(theta)
        events = []
        for c in self._chunks(theta):
            lp = self._scores(c)  # b N
            events.append((lp * self.weights).sum(-1) if self.weights is not None else lp.sum(-1))
        total = torch.cat(events).reshape(theta.shape[:-1])  # *batch
        total = total + self.constraint_log_prob(theta)
        for term in self.extra_terms:
            total = total + term(theta)
        return total

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`log_likelihood`."""
        return self.log_likelihood(theta)
