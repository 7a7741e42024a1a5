"""The batched samplers' half of :func:`gmmpyro.bayes.sample_posterior`: runs, draws and statistics.

Both samplers move a whole population with one likelihood pass per step: ``"batched"``
(:mod:`~gmmpyro.inference.chees`, K HMC chains with ChEES adaptation) and ``"smc"``
(:mod:`~gmmpyro.inference.smc`, tempered sequential Monte Carlo, one run per chain). Each
returns :class:`SamplerOutput`: draws ``(chain, draw)`` by parameter, per-draw statistics and
attributes for the ArviZ result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .chees import BatchedHMCConfig, run_batched_hmc
from .smc import SMCConfig, run_smc
from .target import Target

__all__ = ["SamplerOutput", "batched_output", "resampled_starts", "smc_output"]

_STARTS_POOL = 1000  # prior draws to pick the chains' starting points from: one likelihood pass


@dataclass(frozen=True)
class SamplerOutput:
    """Draws, statistics and attributes of one ``sample_posterior`` run.

    Arguments:
        posterior: ``{name: (chain, draw)}`` in the constrained space.
        stats: ``{statistic: (chain, draw)}``.
        attrs: attributes of the ``posterior`` group (JSON-friendly values).
    """

    posterior: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    attrs: dict[str, object]


def _constrained(target: Target, z: torch.Tensor) -> dict[str, np.ndarray]:
    """``{name: (*batch)}`` float64 arrays of ``z (*batch, k)``."""
    with torch.no_grad():
        return {name: v.detach().double().cpu().numpy() for name, v in target.constrain(z).items()}


def resampled_starts(target: Target, n_chains: int, n_init: int, seed: int) -> torch.Tensor:
    """``n_chains`` starting points ``z (n_chains, k)``: prior draws picked with probability ∝ likelihood.

    Sampling-importance-resampling of ``n_init`` prior draws (one batched likelihood pass),
    as for NUTS, so that chains start in the bulk of the posterior. Draws whose likelihood
    is NaN or infinite are never picked.

    Raises:
        ValueError: no prior draw has a finite likelihood.
    """
    z = target.sample_prior(n_init, seed=seed).to(dtype=target.dtype, device=target.device)  # n k
    with torch.no_grad():
        log_lik = target.log_likelihood(z).double()  # n
    finite = torch.isfinite(log_lik)
    if not bool(finite.any()):
        raise ValueError(
            f"none of {n_init} prior draws has a finite likelihood: the priors miss the data, "
            "or the model cannot score them"
        )
    weights = torch.softmax(log_lik, 0)  # the target reads what the model cannot score as -inf
    generator = torch.Generator(device=weights.device).manual_seed(seed)
    return z[torch.multinomial(weights, n_chains, replacement=True, generator=generator)]


def batched_output(
    target: Target,
    *,
    num_chains: int,
    num_samples: int,
    warmup_steps: int,
    config: BatchedHMCConfig,
    seed: int,
    progress: bool,
) -> SamplerOutput:
    """``num_chains`` ChEES-HMC chains advanced together, started by :func:`resampled_starts`."""
    starts = resampled_starts(target, num_chains, max(_STARTS_POOL, num_chains), seed)
    result = run_batched_hmc(
        target, starts, num_samples=num_samples, warmup_steps=warmup_steps, config=config, seed=seed, progress=progress
    )
    attrs = {"sampler": "ChEES-HMC", "sampling_time": result.seconds, "n_grad_evals": result.n_grad_evals}
    return SamplerOutput(_constrained(target, result.z), dict(result.stats), attrs)


def smc_output(target: Target, *, seeds: list[int], config: SMCConfig, progress: bool) -> SamplerOutput:
    """One tempered-SMC run per seed, each a "chain" of its equally weighted particles.

    Independent runs make R-hat meaningful (each run must find every mode on its own) and
    give a second error estimate of ``log Z``: the spread of the runs' values.
    """
    runs = [run_smc(target, config, seed=s, progress=progress) for s in seeds]
    # resampling leaves the particles in their ancestors' order; shuffled, the halves that split R-hat
    # compares are exchangeable
    orders = [
        torch.randperm(r.z.shape[0], generator=torch.Generator().manual_seed(s))
        for r, s in zip(runs, seeds, strict=True)
    ]
    z = torch.stack([r.z[order.to(r.z.device)] for r, order in zip(runs, orders, strict=True)])  # C n k
    lineage = torch.stack([r.eve.cpu()[order] for r, order in zip(runs, orders, strict=True)])  # C n
    with torch.no_grad():
        lp = target.log_density(z.reshape(-1, target.dim)).reshape(z.shape[:2])
    stats = {
        "lp": lp.double().cpu().numpy(),
        "lineage": lineage.numpy().astype(np.int64),
    }
    log_z = [r.log_evidence for r in runs]
    attrs = {
        "sampler": "SMC",
        "log_evidence": log_z,
        "log_evidence_se": [r.log_evidence_se for r in runs],
        "n_tempering_steps": [len(r.ess) for r in runs],
        "sampling_time": [r.seconds for r in runs],
        "n_likelihood_evals": [r.n_likelihood_evals for r in runs],
    }
    return SamplerOutput(_constrained(target, z), stats, attrs)
