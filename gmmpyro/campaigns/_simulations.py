r"""One simulation of simulation-based calibration: draw θ from the prior, simulate, sample, rank.

Pure torch and NumPy, no Dask: :func:`run_batch` is what a Dask task runs. Simulation ``i``
takes its three seeds (θ, events, posterior) from ``(seed, i)`` alone
(:func:`~gmmpyro.campaigns._checks.derived_seeds`), so its row is the same wherever and in
whatever batch and order it runs.

The rank of the true ``θ_j`` among ``L`` posterior draws ``θ_j^{(l)}`` is

.. math::
    r_j = \#\{l : θ_j^{(l)} < θ_j^{true}\} ∈ \{0, …, L\},

uniform over those ``L + 1`` values for every ``j`` when the posterior is the exact one and
the ``L`` draws are independent (Talts et al. 2018, arXiv:1804.06788, Theorem 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import GmmpyroWarning
from ._checks import derived_seeds

__all__ = ["SBCSpec", "columns", "draw_theta", "pick_draws", "run_batch", "run_simulation", "simulation_seeds"]


@dataclass(frozen=True)
class SBCSpec:
    """Everything a worker needs to run any simulation of an SBC campaign (sent to the workers once).

    Attributes:
        model: the :class:`~gmmpyro.protocols.ConditionalDensity` whose posterior is calibrated.
        simulator: draws the events, ``simulator.sample(n, theta (k,), seed=) -> (n, d)``.
        params: all parameter names of ``model``.
        priors: ``{name: distribution or fixed value}``, as
            :func:`~gmmpyro.inference.bayes.sample_posterior` takes them.
        ranked: the parameters with a prior distribution, the rank columns.
        n_events: events per simulation.
        n_draws: ``L``, the posterior draws each rank counts.
        sampler: ``sample_posterior``'s sampler.
        num_chains, num_samples, warmup_steps: ``sample_posterior``'s options.
        config: the sampler's settings.
        seed: the campaign's seed.
    """

    model: Any
    simulator: Any
    params: tuple[str, ...]
    priors: Mapping[str, Any]
    ranked: tuple[str, ...]
    n_events: int
    n_draws: int
    sampler: str
    num_chains: int
    num_samples: int
    warmup_steps: int
    config: Any
    seed: int


def columns(spec: SBCSpec) -> list[str]:
    """The per-simulation table's columns, in order."""
    cols = ["toy", "seed_theta", "seed_events", "seed_posterior", "status", "message", "ess"]
    cols += [f"theta_{n}" for n in spec.ranked]
    cols += [f"rank_{n}" for n in spec.ranked]
    cols += [f"{stat}_{n}" for stat in ("mean", "sd") for n in spec.ranked]
    return cols


def simulation_seeds(seed: int, toy: int) -> tuple[int, int, int]:
    """The seeds of θ, of the events and of the posterior sampler of simulation ``toy``."""
    theta, events, posterior = derived_seeds((seed, toy), 3)
    return theta, events, posterior


def draw_theta(priors: Mapping[str, Any], seed: int) -> dict[str, float]:
    """One draw of every parameter from its prior (a fixed value stays), reproducible from ``seed``.

    Distributions draw from torch's global generator: it is seeded here and restored afterwards.

    Example:
        >>> prior = {"a": torch.distributions.Uniform(0.0, 1.0), "b": 2.0}
        >>> draw_theta(prior, 5) == draw_theta(prior, 5), draw_theta(prior, 5)["b"]
        (True, 2.0)
    """
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.default_generator.manual_seed(seed)
        return {
            n: float(p.sample()) if isinstance(p, torch.distributions.Distribution) else float(p)
            for n, p in priors.items()
        }


def pick_draws(draws: np.ndarray, lineage: np.ndarray | None, n_draws: int) -> np.ndarray:
    """The indices of ``n_draws`` evenly spaced draws, from the flattened ``draws (C, D)``.

    MCMC draws are taken in chain order, so that each kept draw is ``C·D / n_draws`` iterations
    from the next: at least one effective draw apart when the ESS is at least ``n_draws``
    (thinning to the ESS). SMC particles are first sorted by lineage (the prior draw each
    descends from), so that the kept ones spread over the lineages in proportion to their size.

    Arguments:
        draws: one parameter's draws, shape ``(C, D)``.
        lineage: per draw its SMC lineage, shape ``(C, D)``, or ``None`` for MCMC.
        n_draws: ``L``.

    Returns:
        Indices into ``draws.reshape(-1)``, shape ``(n_draws,)``.

    Example:
        >>> pick_draws(np.zeros((2, 5)), None, 2).tolist()
        [2, 7]
    """
    total = draws.size
    order = np.arange(total)
    if lineage is not None:
        runs = np.repeat(np.arange(lineage.shape[0]), lineage.shape[1])
        order = np.lexsort((lineage.reshape(-1), runs))  # by run, then lineage
    spaced = ((np.arange(n_draws) + 0.5) * total / n_draws).astype(np.int64)
    return order[spaced]


def _effective_size(posterior: dict[str, np.ndarray], lineage: np.ndarray | None) -> float:
    """SMC: the distinct lineages summed over runs (a lower bound on the ESS); MCMC: the least bulk or tail ESS."""
    if lineage is not None:
        from ..inference.smc import distinct_lineages

        return float(sum(distinct_lineages(torch.as_tensor(run)) for run in lineage))
    import arviz as az

    if next(iter(posterior.values())).shape[1] < 4:  # too short for ArviZ's split chains
        return math.nan
    with warnings.catch_warnings():  # many short chains: ArviZ suspects transposed input
        warnings.simplefilter("ignore", UserWarning)
        return float(min(az.ess(d, method=m) for d in posterior.values() for m in ("bulk", "tail")))


def run_simulation(spec: SBCSpec, toy: int) -> dict[str, Any]:
    """One simulation: a row of the per-simulation table (see :func:`columns`).

    ``status`` is ``"ok"``; ``"low_ess"`` when the posterior's effective sample size is below
    ``L`` (the kept draws are then closer than one effective draw apart; the rank still counts);
    or ``"failed"`` when sampling raised (the rank is -1 and ``message`` says why). Warnings of
    the sampler (R-hat, divergences) go to ``message``. Errors of the simulator are not caught.
    """
    from ..inference.bayes import sample_posterior

    theta_seed, events_seed, posterior_seed = simulation_seeds(spec.seed, toy)
    truth = draw_theta(spec.priors, theta_seed)
    model = spec.model
    theta = torch.tensor([truth[n] for n in spec.params], dtype=model.dtype, device=model.device)  # k
    x = spec.simulator.sample(spec.n_events, theta, seed=events_seed)  # N d
    row: dict[str, Any] = {
        "toy": toy, "seed_theta": theta_seed, "seed_events": events_seed, "seed_posterior": posterior_seed,
        "status": "ok", "message": "", "ess": math.nan,
    }  # fmt: skip
    row.update({f"theta_{n}": truth[n] for n in spec.ranked})
    row.update({f"{stat}_{n}": math.nan for stat in ("mean", "sd") for n in spec.ranked})
    row.update({f"rank_{n}": -1 for n in spec.ranked})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GmmpyroWarning)
            idata = sample_posterior(
                model, x, dict(spec.priors), num_samples=spec.num_samples, warmup_steps=spec.warmup_steps,
                num_chains=spec.num_chains, seed=posterior_seed, progress=False, config=spec.config,
                log_likelihood=False, sampler=spec.sampler,
            )  # fmt: skip
    except (RuntimeError, ValueError) as err:  # a numerical failure of this simulation's sampler
        row.update(status="failed", message=f"{type(err).__name__}: {err}")
        return {c: row[c] for c in columns(spec)}
    posterior = {n: np.asarray(idata["posterior"][n].values, dtype=float) for n in spec.ranked}  # C D
    lineage = np.asarray(idata["sample_stats"]["lineage"].values) if spec.sampler == "smc" else None  # C D
    ess = _effective_size(posterior, lineage)
    kept = pick_draws(next(iter(posterior.values())), lineage, spec.n_draws)  # L
    for n, d in posterior.items():
        row[f"rank_{n}"] = int((d.reshape(-1)[kept] < truth[n]).sum())
        row[f"mean_{n}"], row[f"sd_{n}"] = float(d.mean()), float(d.std())
    messages = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GmmpyroWarning))
    row.update(ess=ess, message="; ".join(messages))
    if not ess >= spec.n_draws:  # NaN too: too few draws to tell
        row["status"] = "low_ess"
    return {c: row[c] for c in columns(spec)}


def run_batch(spec: SBCSpec, toys: list[int]) -> list[dict[str, Any]]:
    """:func:`run_simulation` for each of ``toys``: one Dask task."""
    return [run_simulation(spec, i) for i in toys]
