"""sample_posterior's options, checks, seeds and diagnostics, and ArviZ data from a user's own MCMC run.

Helpers and the ``model`` / ``x_obs`` fixtures are shared with ``test_bayes.py`` (posteriors
against exact grids); the two files run in parallel under ``pytest -n``.
"""

from __future__ import annotations

import random
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers import refined_grid, trained_toy_model
from pyro.infer import MCMC, NUTS
from test_bayes import (
    BOX,
    DATA_SEED,
    MODELS,
    N_EVENTS,
    NUISANCE_MODELS,
    TRUTH,
    Z,
    _draws,
    _mcse_mean,
    _mcse_sd,
    _normal_log_prior,
    _uniform_priors,
)

from gmmpyro.distribution import GMMDistribution
from gmmpyro.exceptions import ConvergenceWarning, OutOfRangeWarning
from gmmpyro.inference.bayes import NUTSConfig, _posterior_target, _report, sample_posterior
from gmmpyro.inference.chains import run_chains
from gmmpyro.inference.likelihood import Likelihood
from gmmpyro.inference.terms import PoissonTerm
from gmmpyro.toy import ToyModel


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def x_obs(model):
    return model.sample(N_EVENTS, torch.tensor(TRUTH, dtype=model.dtype), seed=DATA_SEED)


@pytest.mark.mcmc
@pytest.mark.parametrize("factory", sorted(NUISANCE_MODELS))
def test_nuisance_widens_the_posterior(factory):
    """(cx, cy) with ``nu ~ Normal(0, 1)`` marginalised is wider than with ``nu = 0`` fixed.

    Exact grids give both posteriors (2-D at ``nu = 0``, 3-D marginalised over ``nu``); the
    NUTS run with the nuisance must match the marginalised one, ``nu`` included, and be
    wider than the fixed one. For the toy the widening is ~10 % in ``cy`` (x3's shift
    informs ``|cy|`` and ``nu`` together) and nothing in ``cx``.
    """
    model = NUISANCE_MODELS[factory]()
    x = model.sample(N_EVENTS, torch.tensor([*TRUTH, 0.0], dtype=model.dtype), seed=DATA_SEED)
    fixed = refined_grid(model, x, [BOX, BOX, (0.0, 0.0)], 61, 201)  # nu: a length-1 axis at 0
    marginal = refined_grid(model, x, [BOX, BOX, (-5.0, 5.0)], 31, 45, _normal_log_prior(2))
    assert marginal.mean_sd(1)[1] > 1.05 * fixed.mean_sd(1)[1]

    idata = sample_posterior(
        model, x, {**_uniform_priors(), "nu": dist.Normal(0.0, 1.0)}, num_samples=500, warmup_steps=300,
        num_chains=2, seed=2, progress=False, sampler="nuts",
    )  # fmt: skip
    for i, name in enumerate(("cx", "cy", "nu")):
        d = _draws(idata, name)
        mean, sd = marginal.mean_sd(i)
        assert abs(d.mean() - mean) < Z * _mcse_mean(d), (name, d.mean(), mean)
        assert abs(d.std() - sd) < Z * _mcse_sd(d), (name, d.std(), sd)
        assert az.rhat(d) < 1.01, name
    # wider than with nu fixed: expected margin ~3 Monte-Carlo standard errors of the sd
    assert _draws(idata, "cy").std() > fixed.mean_sd(1)[1]


# ------------------------------------------------------------------------------ arguments, seeds, terms


def test_prior_dict_is_checked(model, x_obs):
    priors = _uniform_priors()
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['cz'\].*\['cx', 'cy'\]"):
        sample_posterior(model, x_obs, {**priors, "cz": 0.0})
    with pytest.raises(ValueError, match=r"no prior or fixed value for parameter\(s\) \['cy'\]"):
        sample_posterior(model, x_obs, {"cx": priors["cx"]})
    with pytest.raises(ValueError, match="every parameter is fixed"):
        sample_posterior(model, x_obs, {"cx": 0.1, "cy": 0.2})
    with pytest.raises(TypeError, match="distribution or a number"):
        sample_posterior(model, x_obs, {"cx": priors["cx"], "cy": "flat"})
    with pytest.raises(ValueError, match="univariate"):
        sample_posterior(model, x_obs, {"cx": priors["cx"], "cy": dist.Uniform(-1.0, 1.0).expand([2])})
    with pytest.raises(ValueError, match="discrete"):
        sample_posterior(model, x_obs, {"cx": priors["cx"], "cy": dist.Bernoulli(0.5)})


def test_data_and_options_are_checked(model, x_obs):
    priors = _uniform_priors()
    bad = x_obs.clone()
    bad[3, 0] = 1e6
    with pytest.raises(ValueError, match="x0"):
        sample_posterior(model, bad, priors)
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        sample_posterior(model, x_obs[0], priors)
    with pytest.raises(ValueError, match="weights must have shape"):
        sample_posterior(model, x_obs, priors, weights=torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        sample_posterior(model, x_obs, priors, weights=torch.zeros(len(x_obs)))
    with pytest.raises(ValueError, match="num_chains"):
        sample_posterior(model, x_obs, priors, num_chains=0)
    with pytest.raises(TypeError, match="extra_terms"):
        sample_posterior(model, x_obs, priors, extra_terms=[1.0])
    with pytest.raises(ValueError, match="target_accept_prob"):
        NUTSConfig(target_accept_prob=1.5)
    with pytest.raises(ValueError, match="init_strategy"):
        NUTSConfig(init_strategy="map")
    with pytest.raises(TypeError, match=r"has no \.to\(device\)"):
        sample_posterior(ToyModel(), x_obs, priors, device="meta")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_and_extra_terms_enter_the_log_joint(model, x_obs, dtype):
    """The samplers' log density of the unconstrained point: priors with their Jacobians, weighted events, terms."""
    w = torch.linspace(0.5, 1.5, len(x_obs), dtype=model.dtype)
    term = PoissonTerm(lambda th: 150.0 * (1 + 0.1 * th[..., 0]), observed=len(x_obs))
    priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Normal(0.2, 0.7)}
    target = _posterior_target(Likelihood(model, x_obs, weights=w, extra_terms=[term]), priors, {},
                               dtype=dtype, device="cpu")  # fmt: skip
    z = torch.tensor([0.3, -0.6], dtype=dtype)
    cx = -1.5 + 3.0 * torch.sigmoid(z[0].double())  # the interval's bijection, by hand
    cy = z[1].double()  # the real line's: the identity
    theta = torch.stack([cx, cy]).to(model.dtype)
    expected = (
        priors["cx"].log_prob(cx) + torch.log(3.0 * torch.sigmoid(z[0].double()) * torch.sigmoid(-z[0].double()))
        + priors["cy"].log_prob(cy) + (w * model.log_prob(x_obs, theta)).sum() + term(theta)
    )  # fmt: skip
    torch.testing.assert_close(target.log_density(z).double(), expected.double(), rtol=1e-6, atol=1e-3)
    # NUTS moves one point z (k,), the batched samplers a batch (B, k): the same numbers
    torch.testing.assert_close(target.log_density(z[None])[0], target.log_density(z))


@pytest.mark.mcmc
@pytest.mark.parametrize("sampler", ["smc", "nuts"])
def test_seeds_reproduce_and_global_random_state_is_untouched(model, x_obs, sampler):
    x = x_obs[:30]

    def run(seed):
        with warnings.catch_warnings():  # 10 draws: R-hat is not < 1.01, and that's fine here
            warnings.simplefilter("ignore", ConvergenceWarning)
            return sample_posterior(
                model,
                x,
                _uniform_priors(),
                num_samples=10,
                warmup_steps=10,
                num_chains=2,
                seed=seed,
                progress=False,
                sampler=sampler,
            )

    torch.manual_seed(11)
    random.seed(11)
    np.random.seed(11)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    a = run(7)
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    b, c = run(7), run(None)
    c2 = run(int(c["posterior"].attrs["seed"]))
    np.testing.assert_array_equal(_draws(a, "cx"), _draws(b, "cx"))
    assert not np.array_equal(_draws(a, "cx")[0], _draws(a, "cx")[1])  # chains have their own streams
    np.testing.assert_array_equal(_draws(c, "cy"), _draws(c2, "cy"))


@pytest.mark.mcmc
def test_weighted_run_with_extra_term_under_no_grad(model, x_obs):
    x = x_obs[:40]
    term = PoissonTerm(lambda th: 40.0 * (1 + 0.1 * th[..., 0]), observed=len(x))
    with torch.no_grad():
        idata = sample_posterior(
            model, x, {"cx": dist.Uniform(*BOX), "cy": -0.8}, num_samples=100, warmup_steps=100,
            num_chains=1, weights=torch.full((40,), 0.5), extra_terms=[term], seed=3, progress=False,
        )  # fmt: skip
    assert idata["posterior"]["cx"].shape == (1, 100)
    np.testing.assert_array_equal(idata["constant_data"]["weights"].values, np.full(40, 0.5))
    assert idata["posterior"].attrs["fixed_params"] == "cy=-0.8"


# ------------------------------------------------------------------------------ convergence report


def _ar1(shift=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    """Four AR(1) chains (phi = 0.7), ``(chain, draw)``, each shifted by ``shift``."""
    rng = np.random.default_rng(0)
    x = np.zeros((4, 1000))
    for t in range(1, 1000):
        x[:, t] = 0.7 * x[:, t - 1] + rng.normal(size=4)
    return x + np.asarray(shift)[:, None]


def test_report_warns_on_rhat_and_divergences(caplog):
    """ArviZ's R-hat and bulk ESS are logged; R-hat > 1.01 and divergences warn, constant draws are quiet."""
    calm = {"diverging": np.zeros((4, 1000), dtype=bool)}
    with caplog.at_level("INFO", logger="gmmpyro.inference.bayes"), warnings.catch_warnings():
        warnings.simplefilter("error")
        _report({"a": _ar1(), "fixed": np.ones((4, 1000))}, calm, num_chains=4)
    ess = float(az.ess(_ar1(), method="bulk"))
    assert f"bulk ESS {ess:.0f}" in caplog.text and "R-hat nan" in caplog.text  # the constant one: nan
    with pytest.warns(ConvergenceWarning, match=r"a: R-hat 1\.\d+ > 1\.01"):
        _report({"a": _ar1(shift=(0.0, 0.0, 0.0, 3.0))}, calm, num_chains=4)
    diverging = calm["diverging"].copy()
    diverging[1, [3, 5]] = True
    with pytest.warns(ConvergenceWarning, match=r"2 divergent transition\(s\).*\[0, 2, 0, 0\]"):
        _report({"a": _ar1()}, {"diverging": diverging}, num_chains=4)


def test_chains_mark_divergent_draws_and_take_few_draws():
    """A cliff of 2000 nats at x = 1 (beyond Pyro's 1000 for a divergence) makes every trajectory that
    crosses it divergent; the per-draw statistics hold one entry per kept draw, even for 2 draws."""
    from gmmpyro.inference.target import Target

    cliff = Target({"x": dist.Normal(0.0, 1.0)}, lambda v: -2000.0 * (v["x"] > 1.0).double())

    def run(num_samples, warmup_steps):
        (chain,) = run_chains(cliff, [1], num_samples=num_samples, warmup_steps=warmup_steps,
                              config=NUTSConfig(init_strategy="median"), progress=False)  # fmt: skip
        return chain

    chain = run(300, 100)
    stats = chain.stats
    assert stats["diverging"].dtype == bool and 0 < stats["diverging"].sum() < 300
    assert chain.draws["x"].max() <= 1.0  # the divergent trajectories' far side is never kept
    assert {k: v.shape for k, v in run(2, 3).stats.items()} == dict.fromkeys(stats, (2,))


@pytest.mark.parametrize("init_strategy", ["uniform", "median", "resample"])
def test_chains_start_where_the_log_density_is_finite(init_strategy):
    """Pyro's NUTS takes a potential_fn's start as given: every strategy must hand it a finite one.

    The likelihood is -inf below a = 0.7 (where the prior median 0.5 and most uniform starts lie),
    NaN nowhere else; with no finite point at all the error names the problem."""
    from gmmpyro.inference.target import Target

    half_open = Target({"a": dist.Uniform(0.0, 1.0)}, lambda v: torch.where(v["a"] < 0.7, -torch.inf, -v["a"]))
    (chain,) = run_chains(half_open, [3], num_samples=20, warmup_steps=20,
                          config=NUTSConfig(init_strategy=init_strategy), progress=False)  # fmt: skip
    assert chain.draws["a"].min() >= 0.7
    nowhere = Target({"a": dist.Uniform(0.0, 1.0)}, lambda v: torch.full_like(v["a"], -torch.inf))
    with pytest.raises(ValueError, match="finite"):
        run_chains(nowhere, [3], num_samples=5, warmup_steps=5, config=NUTSConfig(init_strategy=init_strategy),
                   progress=False)  # fmt: skip


def test_priors_on_several_devices_are_refused():
    from gmmpyro.inference.bayes import _device_of

    meta = torch.zeros((), device="meta")
    assert _device_of({"a": dist.Normal(meta, 1.0, validate_args=False)}) == torch.device("meta")
    assert _device_of({"a": dist.Uniform(-1.0, 1.0)}) == torch.device("cpu")
    with pytest.raises(ValueError, match="several devices"):
        _device_of({"a": dist.Normal(meta, 1.0, validate_args=False), "b": dist.Uniform(-1.0, 1.0)})


def test_draws_outside_the_trained_range_warn_once():
    """Data at the edge of the range and a wider prior: one warning about the draws, none per step."""
    model = trained_toy_model()
    x_obs = ToyModel().sample(100, [1.45, 0.0], seed=DATA_SEED)
    priors = {"cx": dist.Uniform(-3.0, 3.0), "cy": dist.Uniform(-1.5, 1.5)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = sample_posterior(model, x_obs, priors, num_samples=60, warmup_steps=60, seed=1, progress=False)
    outside = float((idata.posterior["cx"].values > 1.5).mean())
    range_warnings = [str(w.message) for w in caught if issubclass(w.category, OutOfRangeWarning)]
    assert outside > 0.05  # the model's posterior reaches past cx = 1.5 here
    assert len(range_warnings) == 1 and range_warnings[0].startswith("posterior draws outside"), range_warnings
    assert "cx (" in range_warnings[0] and "cy (" not in range_warnings[0]


def test_from_mcmc_of_a_users_model_matches_the_exact_density():
    """A hand-written Pyro model run with pyro.infer.MCMC: posterior, observed data, and per-event
    log-likelihoods equal to the toy's exact log_prob at each draw; factor and deterministic sites
    left out; the run's keyword arguments reach the replay."""
    from gmmpyro.inference.bayes import from_mcmc

    toy = ToyModel()
    x_obs = toy.sample(60, TRUTH, seed=DATA_SEED)

    def user_model(x, n_used=None):
        cx = pyro.sample("cx", dist.Uniform(*BOX))
        cy = pyro.sample("cy", dist.Uniform(*BOX))
        pyro.deterministic("c_norm", torch.sqrt(cx**2 + cy**2))  # not data
        pyro.factor("penalty", -0.5 * cx**2)  # not an event
        events = x[:n_used]
        with pyro.plate("events", len(events)):
            pyro.sample("x", GMMDistribution(toy, torch.stack([cx, cy], -1)), obs=events)

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(user_model), num_samples=15, warmup_steps=15, disable_progbar=True)
    mcmc.run(x_obs, n_used=40)  # the replay must see n_used: 40 events, not 60
    idata = from_mcmc(mcmc)
    cx, cy = idata.posterior["cx"].values, idata.posterior["cy"].values  # 1 15
    assert cx.shape == (1, 15) and np.array_equal(cx[0], mcmc.get_samples()["cx"].numpy())
    assert set(idata.log_likelihood.data_vars) == set(idata.observed_data.data_vars) == {"x"}
    loglik = idata.log_likelihood["x"].values  # 1 15 40
    assert loglik.shape == (1, 15, 40)
    theta = torch.tensor(np.stack([cx[0], cy[0]], -1))  # 15 2
    exact = toy.log_prob(x_obs[:40], theta[:, None, :]).numpy()  # 15 40
    np.testing.assert_allclose(loglik[0], exact, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(idata.observed_data["x"].values, x_obs[:40].numpy())
    with pytest.raises(ValueError, match="no draws"):
        from_mcmc(MCMC(NUTS(user_model), num_samples=5, warmup_steps=5))


def test_from_mcmc_marks_divergent_draws():
    """A fixed, far too large step size: most transitions diverge, and exactly those are marked."""
    from gmmpyro.inference.bayes import from_mcmc

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("events", len(x)):
            pyro.sample("x", dist.Normal(mu, 0.01), obs=x)

    pyro.set_rng_seed(1)
    kernel = NUTS(model, step_size=5.0, adapt_step_size=False)
    mcmc = MCMC(kernel, num_samples=20, warmup_steps=0, disable_progbar=True)
    mcmc.run(torch.zeros(50))
    divergent = np.zeros(20, dtype=bool)
    divergent[mcmc.diagnostics()["divergences"]["chain 0"]] = True
    assert divergent.any()  # the case under test: draws that diverge
    marked = from_mcmc(mcmc, log_likelihood=False).sample_stats["diverging"].values[0]
    np.testing.assert_array_equal(marked, divergent)
