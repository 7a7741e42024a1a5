"""sample_posterior's batched samplers ("batched": ChEES-HMC chains, "smc": tempered SMC) against exact grids.

The exact toy's posterior from 150 events is tabulated on a grid (``helpers.refined_grid``);
each sampler's means, standard deviations and 68 % quantiles must agree within 4 Monte Carlo
standard errors (a false alarm ~6e-5 per comparison). For ChEES chains the errors come from
ArviZ's bulk ESS over the chains; for SMC from the number of distinct lineages of each run's
particles, ``1 / Σ_e (n_e/n)²`` (resampled particles that share a prior ancestor are
correlated: this bounds their ESS from below, so the tolerance is conservative).
"""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from helpers import refined_grid

from gmmpyro.inference.bayes import NUTSConfig, SMCConfig, sample_posterior
from gmmpyro.inference.smc import distinct_lineages
from gmmpyro.toy import ToyModel

TRUTH = (0.8, -0.8)
BOX = (-1.5, 1.5)
Z = 4.0


@pytest.fixture(scope="module")
def toy_case():
    toy = ToyModel()
    x = toy.sample(150, torch.tensor(TRUTH, dtype=toy.dtype), seed=3)
    return toy, x, refined_grid(toy, x, [BOX, BOX], 61, 201)


def _priors():
    return {"cx": dist.Uniform(*BOX), "cy": dist.Uniform(*BOX)}


def _lineage_ess(idata) -> float:
    return sum(distinct_lineages(run) for run in idata["sample_stats"]["lineage"].values)  # chain particle


def _check_against_grid(idata, exact, ess_of) -> None:
    """``ess_of(draws, method, prob)``: the ESS of the mean (``"mean"``), the sd or the quantile ``prob``."""
    for i, name in enumerate(("cx", "cy")):
        d = np.asarray(idata["posterior"][name].values, dtype=np.float64)  # chain draw
        mean, sd = exact.mean_sd(i)
        ess = ess_of(d, "mean", None)
        assert abs(d.mean() - mean) < Z * d.std() / math.sqrt(ess), (name, d.mean(), mean, ess)
        # sd: the standard error of a sample sd is ~ sd / √(2 ESS) for a near-Gaussian posterior, with the
        # ESS of the squared deviations (antithetic chains have an ESS of the mean above the draws', not of those)
        ess = ess_of(d, "sd", None)
        assert abs(d.std() - sd) < Z * sd / math.sqrt(2 * ess), (name, d.std(), sd, ess)
        for q in (0.16, 0.84):
            x_q, density = exact.quantile(i, q)
            se = math.sqrt(q * (1 - q) / ess_of(d, "quantile", q)) / density
            assert abs(np.quantile(d, q) - x_q) < Z * se, (name, q, np.quantile(d, q), x_q)


@pytest.mark.mcmc
def test_batched_chains_agree_with_the_exact_grid(toy_case):
    toy, x, exact = toy_case
    # 16 chains of 400 draws: R-hat of many short chains (32 × 150) exceeds 1.01 by chance too often
    idata = sample_posterior(toy, x, _priors(), sampler="batched", num_chains=16, num_samples=400,
                             warmup_steps=200, seed=2, progress=False)  # fmt: skip
    assert idata["posterior"]["cx"].shape == (16, 400)
    assert idata["posterior"].attrs["sampler"] == "ChEES-HMC"
    assert set(idata["sample_stats"].data_vars) >= {"lp", "diverging", "n_steps", "step_size", "acceptance_rate"}
    assert float(az.rhat(idata["posterior"]["cx"].values)) < 1.01
    _check_against_grid(idata, exact, lambda d, method, prob: float(az.ess(d, method=method, prob=prob)))


@pytest.mark.mcmc
def test_smc_runs_agree_with_the_exact_grid_and_give_the_evidence(toy_case):
    toy, x, exact = toy_case
    idata = sample_posterior(toy, x, _priors(), sampler="smc", num_chains=2, seed=4, progress=False,
                             config=SMCConfig(n_particles=1000))  # fmt: skip
    assert idata["posterior"]["cx"].shape == (2, 1000)
    ess = _lineage_ess(idata)
    _check_against_grid(idata, exact, lambda d, method, prob: ess)
    # the evidence ∫ prior · L by quadrature on a 601 × 601 grid (prior density 1/9 on the box)
    attrs = idata["posterior"].attrs
    log_z, se = np.asarray(attrs["log_evidence"]), np.asarray(attrs["log_evidence_se"])
    axes = [torch.linspace(*BOX, 601, dtype=torch.float64)] * 2
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    prepared = toy.prepare(x)
    with torch.no_grad():
        lp = torch.cat([prepared.log_prob(c).sum(-1) for c in mesh.split(8192)]).reshape(601, 601)
    peak = lp.max()
    inner = torch.trapezoid(torch.trapezoid((lp - peak).exp(), axes[1], dim=1), axes[0])
    quadrature = float(peak + inner.log() - math.log(9.0))
    for value, error in zip(log_z, se, strict=True):
        assert abs(value - quadrature) < Z * max(error, 0.02), (value, quadrature, error)


@pytest.mark.mcmc
def test_the_default_sampler_is_smc_with_num_samples_particles_near_independent(toy_case):
    """16 default runs of 200 particles: their means spread as ~200 independent draws' would.

    The effective sample size per run is estimated as ``sd² / Var(run means)`` (``sd`` from
    the grid). Its variance estimate has 15 degrees of freedom: with an ESS of the particles'
    number, an estimate below 0.3 of it has probability ~1e-5 (χ²₁₅ / 15 > 3.3). The distinct
    lineages, the lower bound, are ~10 % of the particles: the test would fail at that ESS.
    """
    toy, x, exact = toy_case
    idata = sample_posterior(toy, x, _priors(), num_chains=16, num_samples=200, seed=5, progress=False)
    assert idata["posterior"].attrs["sampler"] == "SMC" and idata["posterior"]["cx"].shape == (16, 200)
    for i, name in enumerate(("cx", "cy")):
        d = np.asarray(idata["posterior"][name].values, dtype=np.float64)  # run particle
        sd = exact.mean_sd(i)[1]
        assert sd**2 / np.var(d.mean(1), ddof=1) > 0.3 * 200, name
    with pytest.raises(ValueError, match="needs num_samples >= 2"):
        sample_posterior(toy, x, _priors(), num_samples=1, progress=False)
    explicit = sample_posterior(toy, x, _priors(), num_chains=1, num_samples=7, seed=5, progress=False,
                                config=SMCConfig(n_particles=30))  # fmt: skip
    assert explicit["posterior"]["cx"].shape == (1, 30)  # the config's particles win over num_samples
    from gmmpyro.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # 5 draws: diagnostics may complain, and that's fine here
        warnings.simplefilter("ignore", ConvergenceWarning)
        nuts = sample_posterior(toy, x, _priors(), num_chains=1, num_samples=5, warmup_steps=5, seed=5,
                                progress=False, config=NUTSConfig(max_tree_depth=3))  # fmt: skip
    assert nuts["posterior"].attrs["sampler"] == "NUTS"  # a config alone chooses its sampler


def test_sampler_and_config_must_match():
    toy = ToyModel()
    x = toy.sample(10, [0.5, 0.5], seed=0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_posterior(toy, x, _priors(), sampler="hmc", progress=False)
    with pytest.raises(TypeError, match="must be a SMCConfig, got NUTSConfig"):
        sample_posterior(toy, x, _priors(), sampler="smc", config=NUTSConfig(), progress=False)
    with pytest.raises(TypeError, match="must be a BatchedHMCConfig"):
        sample_posterior(toy, x, _priors(), sampler="batched", config=SMCConfig(), progress=False)
    with pytest.raises(ValueError, match="needs num_chains >= 2"):
        sample_posterior(toy, x, _priors(), sampler="batched", num_chains=1, progress=False)


def test_batched_starts_skip_draws_the_model_cannot_score():
    """A likelihood that is NaN on most of the prior: every chain starts where it is finite."""
    from gmmpyro.inference.batched_runs import resampled_starts
    from gmmpyro.inference.target import Target

    target = Target({"a": dist.Uniform(-1.0, 1.0)},
                    lambda v: torch.where(v["a"] > 0.5, -v["a"] ** 2, torch.nan))  # fmt: skip
    starts = target.constrain(resampled_starts(target, 64, 500, seed=1))["a"]
    assert bool((starts > 0.5).all())
    with pytest.raises(ValueError, match="none of 500 prior draws has a finite likelihood"):
        resampled_starts(Target({"a": dist.Uniform(-1.0, 1.0)}, lambda v: v["a"] * torch.nan), 4, 500, seed=1)


def test_smc_runs_that_disagree_on_the_evidence_warn():
    from gmmpyro.exceptions import ConvergenceWarning
    from gmmpyro.inference.bayes import _report_smc

    lineage = np.arange(200).reshape(2, 100)
    with pytest.warns(ConvergenceWarning, match=r"disagree on the log evidence \(0.000 ± 0.100, 1.000 ± 0.100\)"):
        _report_smc(lineage, {"log_evidence": [0.0, 1.0], "log_evidence_se": [0.1, 0.1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _report_smc(lineage, {"log_evidence": [0.0, 0.3], "log_evidence_se": [0.1, 0.1]})  # 2.1 σ apart
    # 16 runs scattered by their errors: some of the 120 pairs lie > 3σ apart by chance, the χ² test stays quiet
    many = np.random.default_rng(13).normal(0.0, 0.1, 16)  # two runs 3.5σ apart, χ² 20.1 on 15 dof
    lineages = np.arange(1600).reshape(16, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _report_smc(lineages, {"log_evidence": list(many), "log_evidence_se": [0.1] * 16})
    many[3] += 0.7  # one run 7σ off: a missed mode
    with pytest.warns(ConvergenceWarning, match="disagree on the log evidence"):
        _report_smc(lineages, {"log_evidence": list(many), "log_evidence_se": [0.1] * 16})
