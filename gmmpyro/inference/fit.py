"""Maximum-likelihood fits: :func:`fit` and its read-only result :class:`FitResult`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from .._results import Result, Table
from ..exceptions import ConvergenceWarning, warn
from ..protocols import ConditionalDensity
from .fit_config import FitConfig
from .likelihood import Likelihood
from .minimize import minimize

__all__ = ["FitConfig", "FitResult", "fit"]


@dataclass(frozen=True, repr=False)
class FitResult(Result):
    """A maximum-likelihood fit, read-only.

    Attributes:
        params: all parameter names, in the model's order.
        free: the fitted parameters; ``fixed`` the others (held at their given value).
        values: ``{name: value}`` at the minimum, fixed parameters included.
        errors: ``{name: √C_ii}`` from the Hessian covariance (``0`` for fixed parameters).
        covariance: ``(m, m)`` inverse Hessian of ``-ln L`` over ``free``, or ``NaN`` if the
            Hessian is not positive definite.
        twice_nll: ``-2 ln L`` at the minimum.
        converged: the best start reached ``edm < tol`` with a positive-definite Hessian.
        covariance_ok: the Hessian at the minimum is positive definite.
        edm: estimated distance to the minimum of the best start, ``½ gᵀ H⁻¹ g`` in ``-ln L``.
        n_iter: Newton iterations of the best start.
        starts: ``(S, m)`` starting points; ``start_twice_nll`` the ``-2 ln L`` each ended at
            (local minima show up as larger values); ``start_converged`` their status.
    """

    params: tuple[str, ...]
    free: tuple[str, ...]
    fixed: tuple[str, ...]
    values: Mapping[str, float]
    errors: Mapping[str, float]
    covariance: np.ndarray
    twice_nll: float
    converged: bool
    covariance_ok: bool
    edm: float
    n_iter: int
    starts: np.ndarray
    start_twice_nll: np.ndarray
    start_converged: np.ndarray

    _arrays = ("covariance", "starts", "start_twice_nll", "start_converged")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "errors", MappingProxyType(dict(self.errors)))

    @property
    def valid(self) -> bool:
        """Converged with a usable covariance."""
        return self.converged and self.covariance_ok

    @property
    def theta(self) -> np.ndarray:
        """All parameter values as a vector ``(k,)`` in the model's order."""
        return np.array([self.values[n] for n in self.params])

    @property
    def correlation(self) -> np.ndarray:
        """Correlation matrix ``(m, m)`` over :attr:`free`."""
        sd = np.sqrt(np.diag(self.covariance))
        return self.covariance / np.outer(sd, sd)

    def _table(self) -> Table:
        state = "valid" if self.valid else ("converged, bad Hessian" if self.converged else "NOT converged")
        n_conv = int(self.start_converged.sum())
        status = (
            f"{state}: -2 ln L = {self.twice_nll:.6g}, edm = {self.edm:.2g}, {self.n_iter} iterations, "
            f"{n_conv}/{len(self.start_converged)} starts converged"
        )
        rows = [
            (n, f"{self.values[n]:.6g}", *(("", "fixed") if n in self.fixed else (f"{self.errors[n]:.3g}", "")))
            for n in self.params
        ]
        return Table(f"FitResult ({status})", rows, header=("name", "value", "error", ""), ok=self.valid, align="lrr")


def _box(
    lik: Likelihood, names: tuple[str, ...], bounds: Mapping | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """User bounds of ``names`` as tensors ``(m,)`` (``±inf`` where open)."""
    bounds = dict(bounds or {})
    lik.check_names(bounds, what="bounds")
    lo, hi = [], []
    for n in names:
        a, b = bounds.get(n, (None, None))
        a = -math.inf if a is None else float(a)
        b = math.inf if b is None else float(b)
        if not a < b:
            raise ValueError(f"bounds of {n!r} need lo < hi, got ({a}, {b})")
        lo.append(a)
        hi.append(b)
    return (
        torch.tensor(lo, dtype=lik.dtype, device=lik.device),
        torch.tensor(hi, dtype=lik.dtype, device=lik.device),
    )


def _search_box(
    lik: Likelihood, names: tuple[str, ...], lo: torch.Tensor, hi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a global fit looks for ``names``: the model's ``theta_bounds`` cut by the bounds ``lo, hi``.

    The bounds alone where they miss the model's range; an open side 2 beyond the other.
    Returns ``(low (m,), high (m,))``.
    """
    idx = [lik.index(p) for p in names]
    tb = torch.as_tensor(lik.model.theta_bounds, dtype=lik.dtype, device=lik.device)[idx]  # m 2
    a, b = torch.maximum(tb[:, 0], lo), torch.minimum(tb[:, 1], hi)
    a, b = torch.where(a < b, a, lo), torch.where(a < b, b, hi)
    a = torch.where(torch.isfinite(a), a, torch.where(torch.isfinite(b), b - 2, -torch.ones_like(a)))
    b = torch.where(torch.isfinite(b), b, a + 2)
    return a, b


def _starts(
    lik: Likelihood,
    names: tuple[str, ...],
    start: Mapping,
    lo: torch.Tensor,
    hi: torch.Tensor,
    n: int,
    seed: int,
) -> torch.Tensor:
    """``(n, m)`` starting points: the given/default start, then uniform draws in the search box."""
    a, b = _search_box(lik, names, lo, hi)
    margin = 0.02 * (b - a)  # nudged off any bound
    a, b = a + margin, b - margin
    first = torch.tensor(
        [float(start[p]) if p in start else float("nan") for p in names], dtype=lik.dtype, device=lik.device
    )
    first = torch.where(torch.isnan(first), 0.5 * (a + b), first)
    gen = torch.Generator().manual_seed(seed)
    r = torch.rand(n - 1, len(names), generator=gen, dtype=lik.dtype).to(lik.device)
    return torch.cat([first[None], a + (b - a) * r])  # n m


def _fit(
    lik: Likelihood,
    *,
    fixed: Mapping[str, float] | None,
    start: Mapping[str, float] | None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    config: FitConfig,
) -> FitResult:
    """:func:`fit` of a :class:`~gmmpyro.inference.likelihood.Likelihood`."""
    fixed = {n: float(v) for n, v in (fixed or {}).items()}
    lik.check_names(fixed, what="fixed")
    start = dict(start or {})
    lik.check_names(start, what="start")
    clash = sorted(set(start) & set(fixed))
    if clash:
        raise ValueError(f"start: parameter(s) {clash} are fixed; give their values in fixed= only")
    free = tuple(n for n in lik.param_names if n not in fixed)
    base = torch.tensor([fixed.get(n, 0.0) for n in lik.param_names], dtype=lik.dtype, device=lik.device)
    free_idx = torch.tensor([lik.index(n) for n in free], dtype=torch.long, device=lik.device)
    lo, hi = _box(lik, free, bounds)
    for n, v in start.items():
        i = free.index(n)
        if not lo[i] < v < hi[i]:
            raise ValueError(f"start value {v} of {n!r} lies outside its bounds ({lo[i]:g}, {hi[i]:g})")

    def full(z: torch.Tensor) -> torch.Tensor:  # z (*, m) -> theta (*, k)
        return base.expand(*z.shape[:-1], -1).index_copy(-1, free_idx, z)

    if not free:
        twice_nll = float(-2 * lik.log_likelihood(base).detach())
        lik.check_range(base, what="fixed parameters")
        return FitResult(
            params=lik.param_names,
            free=(),
            fixed=lik.param_names,
            values={n: fixed[n] for n in lik.param_names},
            errors=dict.fromkeys(lik.param_names, 0.0),
            covariance=np.zeros((0, 0)),
            twice_nll=twice_nll,
            converged=True,
            covariance_ok=True,
            edm=0.0,
            n_iter=0,
            starts=np.zeros((1, 0)),
            start_twice_nll=[twice_nll],
            start_converged=[True],
        )

    z0 = _starts(lik, free, start, lo, hi, config.n_starts, config.seed)  # S m
    if start:
        lik.check_range(full(z0[0]), what="start")
    res = minimize(
        lambda z, rows: -lik.log_likelihood(full(z)), z0, lo=lo, hi=hi, tol=config.tol, max_iter=config.max_iter
    )
    score = torch.where(torch.isfinite(res.fun), res.fun, torch.inf)
    # prefer converged starts; among them (or all, if none converged) the lowest minimum
    pick = torch.where(res.converged, score, score + torch.inf if res.converged.any() else score)
    best = int(torch.argmin(pick))
    z_hat = res.x[best]  # m

    H = torch.autograd.functional.hessian(lambda z: -lik.log_likelihood(full(z)), z_hat)  # m m
    H = 0.5 * (H + H.T)
    covariance_ok = bool(torch.isfinite(H).all()) and bool((torch.linalg.eigvalsh(H) > 0).all())
    cov = torch.linalg.inv(H) if covariance_ok else torch.full_like(H, torch.nan)
    converged = bool(res.converged[best]) and covariance_ok
    theta_hat = full(z_hat)
    if not converged:
        warn(
            f"fit did not converge (edm = {float(res.edm[best]):.3g}, Hessian positive definite: "
            f"{covariance_ok}); try other start values, bounds or more starts",
            ConvergenceWarning,
        )
    lik.check_range(theta_hat, what="the maximum-likelihood estimate")

    cov_np = cov.detach().cpu().numpy()
    values = dict(zip(lik.param_names, theta_hat.detach().cpu().tolist(), strict=True))
    errors = {n: 0.0 for n in lik.param_names}
    errors.update({n: float(np.sqrt(cov_np[i, i])) for i, n in enumerate(free)})
    return FitResult(
        params=lik.param_names,
        free=free,
        fixed=tuple(n for n in lik.param_names if n in fixed),
        values=values,
        errors=errors,
        covariance=cov_np,
        twice_nll=float(2 * res.fun[best]),
        converged=converged,
        covariance_ok=covariance_ok,
        edm=float(res.edm[best]),
        n_iter=int(res.n_iter[best]),
        starts=z0.cpu().numpy(),
        start_twice_nll=(2 * res.fun).cpu().numpy(),
        start_converged=res.converged.cpu().numpy(),
    )


def _likelihood_of(
    model: ConditionalDensity | Likelihood,
    x_obs: torch.Tensor | None,
    *,
    weights: torch.Tensor | None = None,
    constraints: Mapping[str, torch.distributions.Distribution] | None = None,
    extra_terms: Iterable[Callable[[torch.Tensor], torch.Tensor]] | None = None,
    chunk_size: int | None = None,
    caller: str = "fit",
) -> Likelihood:
    """``model`` if it is a :class:`~gmmpyro.inference.likelihood.Likelihood`, else one of ``model`` with ``x_obs``.

    A ``TypeError`` names what is missing (the events of a model) or given twice (events or
    terms with a ready ``Likelihood``, which holds its own).
    """
    if isinstance(model, Likelihood):
        given = [
            name
            for name, value in (
                ("x_obs", x_obs),
                ("weights", weights),
                ("constraints", constraints),
                ("extra_terms", extra_terms),
                ("chunk_size", chunk_size),
            )
            if value is not None
        ]
        if given:
            raise TypeError(
                f"{caller}: a Likelihood holds its events, weights, terms and chunk size; "
                f"{', '.join(given)} cannot be given with it"
            )
        return model
    if x_obs is None:
        raise TypeError(f"{caller}: give the observed events, {caller}(model, x_obs, ...), or a Likelihood")
    return Likelihood(
        model, x_obs, weights=weights, constraints=constraints, extra_terms=extra_terms, chunk_size=chunk_size
    )


def fit(
    model: ConditionalDensity | Likelihood,
    x_obs: torch.Tensor | None = None,
    *,
    fixed: Mapping[str, float] | None = None,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    constraints: Mapping[str, torch.distributions.Distribution] | None = None,
    weights: torch.Tensor | None = None,
    extra_terms: Iterable[Callable[[torch.Tensor], torch.Tensor]] | None = None,
    chunk_size: int | None = None,
    config: FitConfig | None = None,
) -> FitResult:
    r"""Maximum-likelihood estimate of all free parameters, with its Hessian covariance.

    Minimises ``-ln L(θ)`` (see :class:`~gmmpyro.inference.likelihood.Likelihood`) by damped
    Newton steps with exact gradients and Hessians from torch, from ``config.n_starts``
    starting points at once (the given ``start``, else the centre of ``model.theta_bounds``,
    then uniform draws in that range), and keeps the lowest converged minimum. The covariance
    is the inverse Hessian of ``-ln L`` at the minimum, :math:`C = H^{-1}`. With ``weights``
    that are not all 1 it is not the covariance of the estimator (that needs a sandwich
    estimator).

    Call it as ``fit(model, x_obs, ...)``, or as ``fit(likelihood, ...)`` with a ready
    :class:`~gmmpyro.inference.likelihood.Likelihood` (which holds the events, weights,
    terms and chunk size: then give none of them here), e.g. to fit many hypotheses to one
    dataset while preparing its events once.

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity`, or a
            :class:`~gmmpyro.inference.likelihood.Likelihood`.
        x_obs: observed events, shape ``(N, d)`` (only with a model).
        fixed: ``{name: value}`` held fixed.
        start: ``{name: value}`` starting values of free parameters.
        bounds: ``{name: (lo, hi)}`` limits of free parameters (``None`` for an open side);
            without bounds parameters are free, and a minimum outside ``model.theta_bounds``
            gives an :class:`~gmmpyro.exceptions.OutOfRangeWarning`.
        constraints: ``{name: distribution}`` constraint terms added to ``ln L``.
        weights: per-event weights, shape ``(N,)``.
        extra_terms: callables ``theta (*batch, k) -> (*batch)`` added to ``ln L``, e.g.
            :class:`~gmmpyro.inference.terms.PoissonTerm` (extended likelihood).
        chunk_size: most parameter points per model call (default ``2**13 // N`` on the CPU, ``2**17 // N`` elsewhere).
        config: the minimiser's settings, :class:`~gmmpyro.inference.fit_config.FitConfig`.

    Returns:
        A :class:`FitResult`; a :class:`~gmmpyro.exceptions.ConvergenceWarning` if it did not converge.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> model = ToyModel()
        >>> x = model.sample(400, [0.8, -0.8], seed=1)  # N d
        >>> result = fit(model, x)
        >>> result.converged, sorted(result.values)
        (True, ['cx', 'cy'])
        >>> lik = Likelihood(model, x)  # events prepared once, for several fits
        >>> fit(lik, fixed={"cx": 0.8}, config=FitConfig(n_starts=1)).free
        ('cy',)
    """
    lik = _likelihood_of(
        model, x_obs, weights=weights, constraints=constraints, extra_terms=extra_terms, chunk_size=chunk_size
    )
    return _fit(lik, fixed=fixed, start=start, bounds=bounds, config=_checked(config))


def _checked(config: FitConfig | None) -> FitConfig:
    """``config``, or the defaults for ``None``; a ``TypeError`` for anything but a :class:`FitConfig`."""
    if config is None:
        return FitConfig()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    return config
