"""``p(x | θ)`` of any conditional density as a Pyro distribution.

:class:`GMMDistribution` wraps a :class:`~gmmpyro.protocols.ConditionalDensity` (a trained
:class:`gmmpyro.DensityModel`, or the exact :class:`gmmpyro.toy.ToyModel`) at parameters
``θ`` so that it composes with plain Pyro: ``pyro.plate`` for i.i.d. events, other sample
sites, ``poutine`` handlers, NUTS.

Observed events scored again and again (NUTS) take an explicit fast path: prepare them
once with ``prepared = model.prepare(x_obs)`` and build the distribution with
``model.distribution(theta, prepared=prepared)``; see :mod:`gmmpyro.prepared`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import TorchDistribution, constraints

from .protocols import ConditionalDensity, PreparedEvents

__all__ = ["GMMDistribution", "ProductSupport"]


class ProductSupport(constraints.Constraint):
    """The product of per-observable domains: an event is valid if every column is.

    Column ``i`` of an event must satisfy ``columns[i]`` (``interval``, ``real`` or
    ``integer_interval``); ``check`` reduces over the last dimension, like
    ``constraints.independent(constraints.stack(columns, dim=-1), 1)``, but names the
    observables in its ``repr`` so that validation errors say which domain was meant.

    Arguments:
        columns: one constraint per column, each with ``event_dim == 0``.
        names: the observables' names, for ``repr``.

    Example:
        >>> s = ProductSupport([constraints.interval(0.0, 1.0), constraints.real], ["a", "b"])
        >>> s.check(torch.tensor([[0.5, -3.0], [1.5, 0.0]]))
        tensor([ True, False])
        >>> s
        ProductSupport(a: Interval(lower_bound=0.0, upper_bound=1.0), b: Real())
    """

    event_dim = 1

    def __init__(self, columns: Sequence[constraints.Constraint], names: Sequence[str] | None = None) -> None:
        self.columns = tuple(columns)
        if any(c.event_dim != 0 for c in self.columns):
            raise ValueError("every column constraint of a ProductSupport must have event_dim 0")
        self.names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(len(self.columns)))
        if len(self.names) != len(self.columns):
            raise ValueError(f"{len(self.names)} names for {len(self.columns)} column constraints")
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # as torch's constraints.cat: discrete if any column is
        return any(c.is_discrete for c in self.columns)

    def check(self, value: torch.Tensor) -> torch.Tensor:
        if value.dim() == 0 or value.shape[-1] != len(self.columns):
            raise ValueError(
                f"expected values of shape (..., {len(self.columns)}) for observables {list(self.names)}, "
                f"got {tuple(value.shape)}"
            )
        ok = [c.check(value[..., i]) for i, c in enumerate(self.columns)]  # d x (*)
        return torch.stack(ok, -1).all(-1)  # *

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}: {c!r}" for n, c in zip(self.names, self.columns, strict=True))
        return f"ProductSupport({cols})"


class GMMDistribution(TorchDistribution):
    r"""The conditional density ``p(x | θ)`` of a model at parameters ``θ``, as a Pyro distribution.

    Event shape ``(d,)`` (one event of the model's ``d`` observables), batch shape
    ``theta.shape[:-1]``. ``log_prob(x)`` broadcasts ``x (*sample, *batch, d)`` against the
    batch shape the Pyro way; ``sample(sample_shape)`` draws events of shape
    ``sample_shape + batch_shape + (d,)``. The support is the product of the observables'
    domains (:class:`ProductSupport`): with ``validate_args=True`` out-of-support values raise
    Pyro's usual ``ValueError``, with ``validate_args=False`` their log density is ``-inf``.
    ``log_prob`` is differentiable in ``θ``; there is no ``rsample`` (events may be discrete).

    With ``prepared`` (from ``model.prepare(x_obs)``) the distribution scores exactly those
    events, paying only the per-θ work; any other value raises a ``ValueError``. A batch of
    ``θ`` of shape ``(G, 1, k)`` against events ``(N, d)`` scores all ``G × N`` pairs in one
    pass.

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity`.
        theta: parameters, shape ``(*batch, k)`` in the order of ``model.params``; converted
            to the model's dtype and device (differentiably).
        prepared: the prepared observed events (:class:`~gmmpyro.protocols.PreparedEvents`)
            this distribution will score, or ``None`` to score any events directly.
        validate_args: as for every ``torch.distributions.Distribution``; ``None`` follows
            torch's global default.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> from gmmpyro.toy import ToyModel
        >>> toy = ToyModel()
        >>> d = GMMDistribution(toy, torch.tensor([0.5, -0.5]))
        >>> d.batch_shape, d.event_shape
        (torch.Size([]), torch.Size([4]))
        >>> x = d.sample((3,))
        >>> d.log_prob(x).shape
        torch.Size([3])
        >>> def model(x_obs):
        ...     c = pyro.sample("c", dist.Uniform(-1.5, 1.5).expand([2]).to_event(1))
        ...     with pyro.plate("events", len(x_obs)):
        ...         pyro.sample("x", GMMDistribution(toy, c), obs=x_obs)
        >>> tr = pyro.poutine.trace(model).get_trace(x)
        >>> tr.nodes["x"]["fn"].batch_shape
        torch.Size([3])
        >>> prepared = toy.prepare(x)  # the fast path for events scored at many θ
        >>> fast = GMMDistribution(toy, torch.tensor([0.5, -0.5]), prepared=prepared)
        >>> torch.allclose(fast.log_prob(prepared.events), d.log_prob(x))
        True
    """

    arg_constraints = {"theta": constraints.real_vector}  # noqa: RUF012 (torch's class-attribute API)
    has_rsample = False
    has_enumerate_support = False

    def __init__(
        self,
        model: ConditionalDensity,
        theta,
        *,
        prepared: PreparedEvents | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(model, ConditionalDensity):
            raise TypeError(
                f"model must implement gmmpyro.protocols.ConditionalDensity (observables, params, "
                f"log_prob, sample, prepare, ...), got {type(model).__name__}"
            )
        theta = torch.as_tensor(theta, dtype=model.dtype, device=model.device)
        k = len(model.params)
        if theta.dim() == 0 or theta.shape[-1] != k:
            raise ValueError(
                f"theta must have shape (..., {k}) for params {tuple(model.params)}, got {tuple(theta.shape)}"
            )
        if prepared is not None:
            if not isinstance(prepared, PreparedEvents):
                raise TypeError(
                    "prepared must come from model.prepare(x) (with events, n_events, log_prob), "
                    f"got {type(prepared).__name__}"
                )
            if getattr(prepared, "model", model) is not model:
                raise ValueError("prepared events belong to another model: prepare them with this model")
        self.model = model
        self.theta = theta
        self.prepared = prepared
        super().__init__(theta.shape[:-1], torch.Size([len(model.observables)]), validate_args=validate_args)

    def __repr__(self) -> str:
        return (
            f"GMMDistribution(model={type(self.model).__name__}, params={tuple(self.model.params)}, "
            f"batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"
        )

    @property
    def support(self) -> ProductSupport:
        """The product of the observables' domains, event dim 1."""
        obs = self.model.observables
        return ProductSupport([o.support for o in obs], [o.name for o in obs])

    def expand(self, batch_shape, _instance=None) -> GMMDistribution:
        """The same density with ``θ`` broadcast (without copying) to ``batch_shape``."""
        new = self._get_checked_instance(GMMDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        try:
            theta = self.theta.expand(batch_shape + self.theta.shape[-1:])
        except RuntimeError as err:
            raise ValueError(
                f"cannot expand batch shape {tuple(self.batch_shape)} to {tuple(batch_shape)}"
            ) from err
        new.model = self.model
        new.theta = theta
        new.prepared = self.prepared
        super(GMMDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008 (torch's signature)
        """Draw events, shape ``sample_shape + batch_shape + (d,)``.

        The model's sampler is seeded from torch's global generator, so ``pyro.set_rng_seed``
        (or ``torch.manual_seed``) makes draws reproducible.
        """
        shape = torch.Size(sample_shape)
        seed = int(torch.randint(0, 2**62, ()))  # drawn from the global CPU generator
        with torch.no_grad():
            x = self.model.sample(shape.numel(), self.theta.detach(), seed=seed)  # n *batch d
        return x.reshape(shape + self.batch_shape + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(value | θ)``, shape ``broadcast(value.shape[:-1], batch_shape)``; ``-inf`` off support."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
        out_shape = _broadcast_shapes(value.shape[:-1], self.batch_shape)
        if out_shape is None:
            raise ValueError(
                f"value of shape {tuple(value.shape)} does not broadcast with "
                f"batch_shape {tuple(self.batch_shape)}"
            )
        theta = _compact(self.theta)  # stride-0 (expanded) batch dims back to size 1
        if self.prepared is None:
            if self._validate_args:
                self._validate_sample(value)
            return self._direct_log_prob(value, theta).expand(out_shape)
        self._check_prepared(value)
        lp = _prepared_log_prob(self.prepared, theta, value.shape[:-1])
        if lp is None:
            raise ValueError(
                f"θ of batch shape {tuple(theta.shape[:-1])} varies along the same dims as the prepared events "
                f"{tuple(value.shape[:-1])}: build the distribution without prepared= to score per-event θ"
            )
        return lp.expand(out_shape)

    def _check_prepared(self, value: torch.Tensor) -> None:
        """Refuse values other than the prepared events (identity is the cheap common case)."""
        events = self.prepared.events
        if value is not events and not _same_events(value, events):
            raise ValueError(
                f"this distribution scores the {self.prepared.n_events} prepared events only, got a value of shape "
                f"{tuple(value.shape)} with other events: pass prepared.events, or build the distribution "
                f"without prepared="
            )
        if self._validate_args and not getattr(self.prepared, "all_inside", True):
            self._validate_sample(value)

    def _direct_log_prob(self, value: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        x = value.to(dtype=self.model.dtype, device=self.model.device)
        ok = self.support.check(x)  # *V
        if bool(ok.all()):
            return self.model.log_prob(x, theta)
        # score a harmless in-support stand-in where the value is invalid, then mask to -inf
        x = torch.where(ok.unsqueeze(-1), x, _inside_point(self.model.observables, x))
        lp = self.model.log_prob(x, theta)
        return torch.where(ok, lp, torch.full_like(lp, -math.inf))


# ------------------------------------------------------------------------------ helpers


def _broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> torch.Size | None:
    """``torch.broadcast_shapes`` for two shapes, ``None`` if they don't broadcast.

    In torch 2.13 ``torch.broadcast_shapes`` takes ~0.2 ms a call (this: ~1 µs), a tenth
    of a whole gradient evaluation of the toy likelihood inside NUTS.
    """
    n = max(len(a), len(b))
    out = []
    for i, j in zip((1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b), strict=True):
        if i != j and i != 1 and j != 1:
            return None
        out.append(j if i == 1 else i)
    return torch.Size(out)


def _same_events(value: torch.Tensor, events: torch.Tensor) -> bool:
    """Whether ``value`` holds the prepared ``events (N, d)`` (in any batch layout, after dtype conversion)."""
    if value.numel() != events.numel() or value.shape[-1] != events.shape[-1]:
        return False
    same_memory = value.dtype == events.dtype and value.device == events.device
    if same_memory and value.data_ptr() == events.data_ptr() and value.is_contiguous() and events.is_contiguous():
        return True  # e.g. obs=x_obs after prepared = model.prepare(x_obs): events is x_obs.detach()
    converted = value.detach().to(dtype=events.dtype, device=events.device).reshape(events.shape)
    return torch.equal(converted, events)


def _compact(theta: torch.Tensor) -> torch.Tensor:
    """Undo ``expand``: batch dims with stride 0 become size 1 (a view; differentiable)."""
    for i in range(theta.dim() - 1):
        if theta.shape[i] > 1 and theta.stride(i) == 0:
            theta = theta.narrow(i, 0, 1)
    return theta


def _prepared_log_prob(
    prepared: PreparedEvents, theta: torch.Tensor, vshape: torch.Size
) -> torch.Tensor | None:
    """Per-event log densities from prepared events laid out as ``broadcast(vshape, theta batch)``.

    ``prepared`` holds the ``N = prod(vshape)`` events of a value of batch shape ``vshape``.
    Works when θ and the value vary along different dims (the usual case: θ constant over
    the event plate); returns ``None`` otherwise (scoring all pairs would waste work).
    """
    tshape = theta.shape[:-1]
    L = max(len(tshape), len(vshape))
    T = (1,) * (L - len(tshape)) + tuple(tshape)
    V = (1,) * (L - len(vshape)) + tuple(vshape)
    if any(t > 1 and v > 1 for t, v in zip(T, V, strict=True)):
        return None
    lp = prepared.log_prob(theta)  # *T N
    lp = lp.reshape(T + V)  # T1..TL V1..VL
    perm = [j for i in range(L) for j in (i, L + i)]
    return lp.permute(perm).reshape([max(t, v) for t, v in zip(T, V, strict=True)])  # broadcast(T, V)


def _inside_point(observables, like: torch.Tensor) -> torch.Tensor:
    """One event inside the support of every observable, shaped ``(d,)`` like ``like``."""
    vals = []
    for o in observables:
        if o.bounds is None:
            vals.append(0.0)
        elif o.discrete:
            vals.append(o.bounds[0])
        else:
            vals.append(0.5 * (o.bounds[0] + o.bounds[1]))
    return torch.tensor(vals, dtype=like.dtype, device=like.device)
