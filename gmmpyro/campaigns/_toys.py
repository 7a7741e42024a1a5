r"""One coverage pseudo-experiment: draw events and global observables, fit, and test the truth.

Pure torch and NumPy, no Dask: :func:`run_batch` is what a Dask task runs, and it gives the
same rows wherever and in whatever order it runs, because toy ``i`` depends only on
``seed + i``.

The likelihood-ratio test of a tested parameter ``θ_j`` at its true value is

.. math::
    q_j = -2 \ln L(θ_j^{true}, \hat{\hat ψ}) + 2 \ln L(\hat θ, \hat ψ)

with every other parameter ``ψ`` (other tested parameters and nuisances) minimised; the
interval ``{θ_j : q_j(θ_j) < Δq(cl, 1)}`` of a profile scan contains ``θ_j^{true}`` exactly
when ``q_j < Δq(cl, 1)``, so one conditional fit replaces the scan and its interpolation.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributions import (
    AffineTransform,
    Cauchy,
    Independent,
    Laplace,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    StudentT,
    TransformedDistribution,
)

from ..exceptions import GmmpyroWarning
from ..inference.fit import FitResult, fit
from ..inference.fit_config import FitConfig
from ..inference.likelihood import Likelihood

__all__ = [
    "JOINT",
    "ToySpec",
    "cl_tag",
    "columns",
    "fluctuated_constraints",
    "global_observable_location",
    "run_batch",
    "run_toy",
]

JOINT = "joint"  # the column tag of the joint test of all tested parameters
_GLOBAL_OBSERVABLE_STREAM = 0x61757820  # tags the random stream of the global observables ("aux ")
_SYMMETRIC = (Normal, Laplace, Cauchy, StudentT, MultivariateNormal, LowRankMultivariateNormal)


@dataclass(frozen=True)
class ToySpec:
    """Everything a worker needs to run any toy of a coverage campaign (sent to the workers once).

    Attributes:
        model: the fitted :class:`~gmmpyro.protocols.ConditionalDensity`.
        simulator: draws the events, ``simulator.sample(n, theta (k,), seed=) -> (n, d)``.
        params: all parameter names of ``model``.
        theta_true: the true value of every parameter, in ``params`` order.
        n_events: events per toy.
        tested: the parameters whose intervals are tested (those not profiled).
        constraints: ``((names, distribution), ...)`` as given to fits.
        thresholds: ``{"joint" or name: (Δq per level)}``.
        cl: the confidence levels.
        seed: toy ``i`` uses ``seed + i``.
        config: the fits' settings.
        bounds: ``{name: (lo, hi)}``, the model's ``theta_bounds``.
    """

    model: Any
    simulator: Any
    params: tuple[str, ...]
    theta_true: tuple[float, ...]
    n_events: int
    tested: tuple[str, ...]
    constraints: tuple[tuple[tuple[str, ...], Any], ...]
    thresholds: Mapping[str, tuple[float, ...]]
    cl: tuple[float, ...]
    seed: int
    config: FitConfig
    bounds: Mapping[str, tuple[float, float]]

    @property
    def truth(self) -> dict[str, float]:
        return dict(zip(self.params, self.theta_true, strict=True))


def cl_tag(cl: float) -> str:
    """``0.68`` → ``"68"``, ``0.9973`` → ``"99.73"``: the level in per cent, as column names show it."""
    return f"{100 * cl:.10g}"


def columns(spec: ToySpec) -> list[str]:
    """The per-toy table's columns, in order."""
    cols = ["toy", "seed", "status", "message"]
    cols += [f"q_{n}" for n in (*spec.tested, JOINT)]
    cols += [f"covered_{n}_{cl_tag(cl)}" for n in (*spec.tested, JOINT) for cl in spec.cl]
    cols += [f"mle_{n}" for n in spec.params] + ["twice_nll"]
    cols += [f"glob_{n}" for names, _ in spec.constraints for n in names]
    return cols


# ----------------------------------------------------------------- global observables
def global_observable_location(dist: Any, names: tuple[str, ...]) -> torch.Tensor:
    """The observed global observable(s) ``a₀`` a constraint is centred on, shape ``(len(names),)``.

    Only location families symmetric about ``loc`` are accepted: there ``ln π(ν)`` read as a
    function of ``ν`` and as the density of the auxiliary measurement ``a₀`` given ``ν`` are
    the same function, so the toy's measurement can be drawn around the true ``ν``.
    """
    base = dist.base_dist if isinstance(dist, Independent) else dist
    label = names[0] if len(names) == 1 else names
    if not isinstance(base, _SYMMETRIC):
        raise ValueError(
            f"constraint on {label!r}: coverage toys draw the constraint's global observable around the true "
            f"value, which needs a location family symmetric about its loc (Normal, Laplace, Cauchy, StudentT, "
            f"MultivariateNormal, LowRankMultivariateNormal, or Independent of one), got {type(dist).__name__}"
        )
    loc = torch.as_tensor(base.loc).detach().reshape(-1)
    shape = tuple(dist.batch_shape + dist.event_shape)
    if loc.numel() != len(names) or math.prod(shape) != len(names):
        raise ValueError(
            f"constraint on {label!r}: needs {len(names)} value(s) (one per parameter), got a distribution "
            f"of batch shape {tuple(dist.batch_shape)} and event shape {tuple(dist.event_shape)}"
        )
    return loc


def _standard_noise(base: Any, rng: np.random.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A draw of ``a - loc`` for one toy, shape ``(m,)``, from ``rng`` (the global RNGs are left alone)."""
    if isinstance(base, (MultivariateNormal, LowRankMultivariateNormal)):
        z = torch.as_tensor(rng.standard_normal(base.loc.shape[-1]), dtype=dtype)
        return base.scale_tril.detach().to(dtype) @ z
    scale = torch.as_tensor(base.scale).detach().to(dtype).reshape(-1)
    if isinstance(base, Normal):
        eps = rng.standard_normal(scale.numel())
    elif isinstance(base, Laplace):
        eps = rng.laplace(size=scale.numel())
    elif isinstance(base, Cauchy):
        eps = rng.standard_cauchy(scale.numel())
    else:  # StudentT
        eps = rng.standard_t(torch.as_tensor(base.df).detach().reshape(-1).numpy(), size=scale.numel())
    return scale * torch.as_tensor(eps, dtype=dtype)


def fluctuated_constraints(spec: ToySpec, seed: int) -> tuple[dict[str, float], dict[tuple[str, ...], Any]]:
    """Each constraint's global observable drawn for one toy, and the constraint centred on it.

    A constraint ``π(ν) = f(a₀ - ν)`` (``f`` symmetric, ``a₀`` its ``loc``) is the likelihood of an
    auxiliary measurement ``a₀``. Each toy draws ``a ~ f(a - ν_true)`` and fits with ``f(a - ν)``:
    the unconditional ensemble of pyhf's toys (``pdf.sample`` draws the auxiliary data around the
    true parameters). Returns ``({name: a}, {names: shifted distribution})``.
    """
    rng = np.random.default_rng([_GLOBAL_OBSERVABLE_STREAM, seed])
    truth = spec.truth
    globs, dists = {}, {}
    for names, dist in spec.constraints:
        base = dist.base_dist if isinstance(dist, Independent) else dist
        loc = global_observable_location(dist, names).to(torch.float64)  # m
        true = torch.tensor([truth[n] for n in names], dtype=torch.float64)  # m
        a = true + _standard_noise(base, rng, torch.float64)  # m
        globs.update(zip(names, a.tolist(), strict=True))
        shift = (a - loc).to(base.loc.dtype).to(base.loc.device).reshape(dist.batch_shape + dist.event_shape)
        event_dim = len(dist.event_shape)
        dists[names] = TransformedDistribution(
            dist, [AffineTransform(shift, 1.0, event_dim=event_dim)], validate_args=False
        )
    return globs, dists


# ----------------------------------------------------------------- fits
def _interior(values: Mapping[str, float], bounds: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """``values`` strictly inside their bounds (a start on a bound is not allowed; those are left out)."""
    return {n: v for n, v in values.items() if bounds[n][0] < v < bounds[n][1] and math.isfinite(v)}


def _conditional(lik: Likelihood, spec: ToySpec, fixed: dict[str, float], start: Mapping[str, float]) -> FitResult:
    """``-ln L`` minimised with ``fixed`` held, the first start at ``start`` (the global fit)."""
    free_start = {n: v for n, v in start.items() if n not in fixed}
    return fit(lik, fixed=fixed, start=_interior(free_start, spec.bounds), bounds=spec.bounds, config=spec.config)


def _profile_tests(lik: Likelihood, spec: ToySpec) -> tuple[FitResult, dict[str, FitResult]]:
    """The global fit and the conditional fit at the truth of each tested parameter (and jointly)."""
    truth = spec.truth
    best = fit(lik, start=_interior(truth, spec.bounds), bounds=spec.bounds, config=spec.config)
    fits = {n: _conditional(lik, spec, {n: truth[n]}, best.values) for n in spec.tested}
    if len(spec.tested) > 1:
        fits[JOINT] = _conditional(lik, spec, {n: truth[n] for n in spec.tested}, best.values)
    else:
        fits[JOINT] = fits[spec.tested[0]]
    # a conditional fit below the global one means the global fit missed its minimum: restart it there
    lowest = min(fits.values(), key=lambda f: f.twice_nll)
    if lowest.twice_nll < best.twice_nll:
        again = fit(
            lik,
            start=_interior(lowest.values, spec.bounds),
            bounds=spec.bounds,
            config=dataclasses.replace(spec.config, n_starts=1),
        )
        if again.twice_nll < best.twice_nll:
            best = again
    return best, fits


def run_toy(spec: ToySpec, toy: int) -> dict[str, Any]:
    """One pseudo-experiment: a row of the per-toy table (see :func:`columns`).

    ``status`` is ``"ok"``; ``"unconverged"`` when a fit ended with finite values but short of
    :func:`~gmmpyro.inference.fit.fit`'s convergence test (``message`` names it) — typically a
    minimum on a cusp of the likelihood (the toy's density depends on ``|c|``: at ``c = 0`` the
    gradient does not vanish at the minimum) — these keep their ``q``; or ``"failed"`` (a
    numerical error, or a non-finite ``-2 ln L``): ``q`` is NaN. Errors of the simulator are not
    caught.
    """
    seed = spec.seed + toy
    model = spec.model
    theta = torch.tensor(spec.theta_true, dtype=model.dtype, device=model.device)  # k
    x = spec.simulator.sample(spec.n_events, theta, seed=seed)  # N d
    globs, constraints = fluctuated_constraints(spec, seed)
    row: dict[str, Any] = {"toy": toy, "seed": seed, "status": "ok", "message": ""}
    q = dict.fromkeys((*spec.tested, JOINT), math.nan)
    mle = dict.fromkeys(spec.params, math.nan)
    twice_nll = math.nan
    try:
        with warnings.catch_warnings():  # the fits' convergence is read from their results
            warnings.simplefilter("ignore", GmmpyroWarning)
            lik = Likelihood(model, x, constraints=constraints)
            best, fits = _profile_tests(lik, spec)
        mle, twice_nll = dict(best.values), best.twice_nll
        values = [best.twice_nll, *(f.twice_nll for f in fits.values())]
        if not all(math.isfinite(v) for v in values):
            row.update(status="failed", message="-2 ln L is not finite at the MLE or at the truth")
        else:
            q = {n: max(0.0, f.twice_nll - best.twice_nll) for n, f in fits.items()}
            short = ["the global fit"] if not best.converged else []
            short += [f"the fit at the true {n}" for n, f in fits.items() if not f.converged and n != JOINT]
            if JOINT in fits and fits[JOINT] is not fits[spec.tested[0]] and not fits[JOINT].converged:
                short.append("the joint fit at the truth")
            if short:
                row.update(status="unconverged", message=f"not converged: {', '.join(short)}")
    except (RuntimeError, ValueError) as err:  # a numerical failure of this toy's fits
        row.update(status="failed", message=f"{type(err).__name__}: {err}")
    for n, value in q.items():
        row[f"q_{n}"] = value
        for cl, dq in zip(spec.cl, spec.thresholds[n], strict=True):
            row[f"covered_{n}_{cl_tag(cl)}"] = bool(value < dq)  # NaN (failed) is never covered
    row.update({f"mle_{n}": float(v) for n, v in mle.items()})
    row["twice_nll"] = float(twice_nll)
    row.update({f"glob_{n}": float(v) for n, v in globs.items()})
    return {c: row[c] for c in columns(spec)}


def run_batch(spec: ToySpec, toys: list[int]) -> list[dict[str, Any]]:
    """:func:`run_toy` for each of ``toys``: one Dask task."""
    return [run_toy(spec, i) for i in toys]
