"""NUTS posteriors from sample_posterior (and from a user-written Pyro model) against exact grids.

The density comes from the ``MODELS`` / ``NUISANCE_MODELS`` factories, so a trained
DensityModel can be checked by the same tests as the exact toy. Monte-Carlo tolerances are
4 standard errors computed from each run's effective sample size (a false alarm ~6e-5 per
comparison); all seeds are fixed.
"""

from __future__ import annotations

import io
import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers import refined_grid, trained_toy_model
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size

from gmmpyro.distribution import GMMDistribution
from gmmpyro.exceptions import ConvergenceWarning
from gmmpyro.inference.bayes import sample_posterior
from gmmpyro.toy import ToyModel

# name -> factory of a ConditionalDensity over (cx, cy)
MODELS = {"toy": ToyModel, "trained": trained_toy_model}
NUISANCE_MODELS = {"toy": lambda: ToyModel(x3_shift=0.3)}  # over (cx, cy, nu)

TRUTH = (0.8, -0.8)
N_EVENTS = 150  # enough that the posterior is unimodal (sign flips of c carry < 1e-3 mass)
DATA_SEED = 3
BOX = (-1.5, 1.5)  # uniform prior on cx and cy
Z = 4.0  # tolerance in Monte-Carlo standard errors


def _uniform_priors():
    return {"cx": dist.Uniform(*BOX), "cy": dist.Uniform(*BOX)}


def _normal_log_prior(index: int):
    return lambda mesh: dist.Normal(0.0, 1.0).log_prob(mesh[..., index].float()).to(mesh.dtype)


# ------------------------------------------------------------------------------ Monte-Carlo errors


def _ess(draws: np.ndarray) -> float:
    """Effective sample size (chain, draw) -> float, Geyer's initial monotone sequence."""
    return float(
        effective_sample_size(torch.as_tensor(draws, dtype=torch.float64), chain_dim=0, sample_dim=1)
    )


def _mcse_mean(d: np.ndarray) -> float:
    return float(d.std()) / math.sqrt(_ess(d))


def _mcse_sd(d: np.ndarray) -> float:
    y = (d - d.mean()) ** 2  # sd² is the mean of y; delta method for the square root
    return float(y.std()) / math.sqrt(_ess(y)) / (2 * float(d.std()))


def _mcse_quantile(d: np.ndarray, x_q: float, q: float, density: float) -> float:
    return math.sqrt(q * (1 - q) / _ess((d <= x_q).astype(np.float64))) / density


def _draws(idata, name: str) -> np.ndarray:
    return np.asarray(idata["posterior"][name].values, dtype=np.float64)  # chain draw


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def x_obs(model):
    return model.sample(N_EVENTS, torch.tensor(TRUTH, dtype=model.dtype), seed=DATA_SEED)


@pytest.fixture(scope="module")
def exact(model, x_obs):
    grid = refined_grid(model, x_obs, [BOX, BOX], 61, 201)
    # the test needs a unimodal posterior: NUTS chains do not hop between sign-flipped modes
    assert grid.mass(0, lambda t: t < 0) < 1e-3 and grid.mass(1, lambda t: t > 0) < 1e-3
    return grid


@pytest.fixture(scope="module")
def idata(model, x_obs):
    # 2 × 1000 draws: with 2 × 500, R-hat of this posterior passed 1.01 in 2 of 12 seeds (1.015 at most; median
    # 1.003) and the fixture's warning fails the tests; with 2 × 1000 the largest of 8 seeds was 1.007
    return sample_posterior(
        model,
        x_obs,
        _uniform_priors(),
        num_samples=1000,
        warmup_steps=300,
        num_chains=2,
        seed=1,
        progress=False,
        sampler="nuts",
    )


# ------------------------------------------------------------------------------ NUTS against the exact grid


@pytest.mark.mcmc
def test_posterior_agrees_with_exact_grid(idata, exact):
    for i, name in enumerate(("cx", "cy")):
        d = _draws(idata, name)
        mean, sd = exact.mean_sd(i)
        assert abs(d.mean() - mean) < Z * _mcse_mean(d), (name, d.mean(), mean)
        assert abs(d.std() - sd) < Z * _mcse_sd(d), (name, d.std(), sd)
        for q in (0.16, 0.84):  # the 68 % central interval
            x_q, density = exact.quantile(i, q)
            assert abs(np.quantile(d, q) - x_q) < Z * _mcse_quantile(d, x_q, q, density), (name, q)


@pytest.mark.mcmc
def test_chains_converge(idata):
    for name in ("cx", "cy"):
        assert az.rhat(_draws(idata, name)) < 1.01
        assert az.ess(_draws(idata, name), method="bulk") > 200
    assert not idata["sample_stats"]["diverging"].values.any()


@pytest.mark.mcmc
def test_inference_data_content(idata, model, x_obs):
    assert idata["posterior"]["cx"].shape == (2, 1000)
    stats_ = idata["sample_stats"]
    for key in ("lp", "diverging", "energy", "step_size", "n_steps", "tree_depth", "acceptance_rate"):
        assert stats_[key].shape == (2, 1000), key
    assert np.isfinite(stats_["lp"].values).all() and (stats_["n_steps"].values >= 1).all()
    assert ((stats_["acceptance_rate"].values >= 0) & (stats_["acceptance_rate"].values <= 1)).all()
    np.testing.assert_array_equal(idata["observed_data"]["x"].values, x_obs.numpy())
    assert list(idata["observed_data"]["observable"].values) == [o.name for o in model.observables]
    ll = idata["log_likelihood"]["x"]
    assert ll.shape == (2, 1000, N_EVENTS)
    theta = torch.tensor([[_draws(idata, "cx")[1, 7], _draws(idata, "cy")[1, 7]]], dtype=model.dtype)
    rtol = 1e-9 if model.dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(ll.values[1, 7], model.log_prob(x_obs, theta).detach().numpy(), rtol=rtol)
    attrs = idata["posterior"].attrs
    assert attrs["seed"] == 1 and len(attrs["chain_seeds"]) == 2 and len(attrs["n_grad_evals"]) == 2
    assert sum(attrs["n_grad_evals"]) >= stats_["n_steps"].values.sum()


@pytest.mark.mcmc
def test_arviz_summary_and_plots_run_headless(idata):
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = az.summary(idata)
    assert {"cx", "cy"} <= set(summary.index)
    for axes in (az.plot_trace(idata), az.plot_pair(idata, var_names=["cx", "cy"])):
        np.ravel(axes)[0].figure.savefig(io.BytesIO(), format="png")  # draws every artist
    plt.close("all")


@pytest.mark.mcmc
def test_user_written_pyro_model(model, x_obs, exact):
    """The documented pattern, run by Pyro's MCMC directly, finds the same posterior."""

    def pyro_model(x):
        cx = pyro.sample("cx", dist.Uniform(*BOX))
        cy = pyro.sample("cy", dist.Uniform(*BOX))
        with pyro.plate("events", len(x)):
            pyro.sample("x", GMMDistribution(model, torch.stack([cx, cy], -1)), obs=x)

    pyro.set_rng_seed(5)
    mcmc = MCMC(NUTS(pyro_model), num_samples=200, warmup_steps=150, disable_progbar=True)
    mcmc.run(x_obs)
    for i, name in enumerate(("cx", "cy")):
        d = mcmc.get_samples(group_by_chain=True)[name].double().numpy()  # 1 draw
        mean, _ = exact.mean_sd(i)
        assert abs(d.mean() - mean) < Z * _mcse_mean(d), name


# ------------------------------------------------------------------------------ nuisance parameters


@pytest.mark.parametrize("sampler", ["nuts", "smc"])
def test_torch_priors_work_as_pyro_priors(sampler):
    """torch and Pyro distributions are the same priors: the same seed gives the same draws; a torch
    distribution that Pyro has no twin of works too."""
    toy = ToyModel()
    x = toy.sample(N_EVENTS, list(TRUTH), seed=DATA_SEED)
    torch_priors = {name: torch.distributions.Uniform(*BOX) for name in ("cx", "cy")}
    torch_only = {"cx": torch.distributions.Uniform(*BOX), "cy": _TorchOnly(-0.8, 0.5)}
    with warnings.catch_warnings():  # 20 + 20 draws compare the runs; they are too few for clean diagnostics
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = [
            sample_posterior(toy, x, priors, num_samples=20, warmup_steps=20, num_chains=1, seed=5, progress=False,
                             sampler=sampler)
            for priors in (_uniform_priors(), torch_priors, torch_only)
        ]
    np.testing.assert_array_equal(_draws(runs[0], "cx"), _draws(runs[1], "cx"))
    assert np.isfinite(_draws(runs[2], "cy")).all() and np.ptp(_draws(runs[2], "cy")) > 0


class _TorchOnly(torch.distributions.Normal):
    """A torch distribution that Pyro has no twin of."""
