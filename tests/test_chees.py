"""The batched ChEES-HMC sampler: draws against analytic and grid posteriors, seeding, bad inputs.

Monte Carlo tolerances: a posterior expectation ``E f`` estimated by the mean of ``n`` draws
has standard error ``sd(f) / sqrt(ESS(f))``, with ``ESS(f)`` the bulk effective sample size
that ``arviz.ess`` computes from the ``(chain, draw)`` array of ``f``; estimates must lie
within 4 standard errors of the exact value.
"""

import math

import arviz as az
import numpy as np
import pytest
import torch
import torch.distributions as dist

from gmmpyro.inference.chains import STATS
from gmmpyro.inference.chees import BatchedHMCConfig, run_batched_hmc
from gmmpyro.inference.target import Target

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 1.8], [1.8, 4.0]], dtype=torch.float64)  # sds 1 and 2, correlation 0.9
PRIOR_SD = 100.0


def gaussian_target() -> Target:
    prec = torch.linalg.inv(COV)

    def log_likelihood(v):
        x = torch.stack([v["a"], v["b"]], -1) - MU  # B 2
        return -0.5 * ((x @ prec) * x).sum(-1)

    return Target({"a": dist.Normal(0.0, PRIOR_SD), "b": dist.Normal(0.0, PRIOR_SD)}, log_likelihood)


def boundary_target() -> Target:
    return Target({"theta": dist.Uniform(-1.5, 1.5)}, lambda v: -0.5 * ((v["theta"] - 1.4) / 0.2) ** 2)


def assert_expectation(f: np.ndarray, exact: float, name: str) -> None:
    """``f (chains, draws)``: its mean within 4 Monte Carlo standard errors of ``exact``."""
    se = f.std() / math.sqrt(float(az.ess(f)))
    assert abs(f.mean() - exact) < 4 * se, f"{name}: {f.mean():.4f} vs {exact:.4f} ± {se:.4f}"


def test_correlated_gaussian_moments_and_rhat():
    # the Gaussian likelihood times the wide Gaussian prior is Gaussian: add the precisions
    cov = torch.linalg.inv(torch.linalg.inv(COV) + torch.eye(2, dtype=torch.float64) / PRIOR_SD**2)
    mean = cov @ torch.linalg.solve(COV, MU)
    # R-hat's own noise shrinks with the draws per chain, so few long chains rather than many short ones
    init = MU + 3.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = run_batched_hmc(gaussian_target(), init, num_samples=500, warmup_steps=100, seed=1)
    x = r.z.numpy()  # K S 2
    assert x.shape == (16, 500, 2)
    d = x - mean.numpy()
    for i in range(2):
        assert_expectation(x[..., i], float(mean[i]), f"mean {i}")
        assert float(az.rhat(x[..., i])) < 1.01
        for j in range(i, 2):
            assert_expectation(d[..., i] * d[..., j], float(cov[i, j]), f"cov {i}{j}")
    assert set(r.stats) == set(STATS)
    assert all(v.shape == (16, 500) for v in r.stats.values())
    assert r.stats["diverging"].dtype == bool and not r.stats["diverging"].any()
    assert r.n_grad_evals > 16 * r.stats["n_steps"][0].sum()


def test_constrained_prior_against_grid_posterior():
    t = boundary_target()
    init = t.unconstrain({"theta": torch.full((16,), 1.0)})
    r = run_batched_hmc(t, init, num_samples=200, warmup_steps=100, seed=2)
    theta = t.constrain(r.z.reshape(-1, 1))["theta"].reshape(16, 200).numpy()
    assert ((theta > -1.5) & (theta < 1.5)).all()
    grid = np.linspace(-1.5, 1.5, 30001)
    w = np.exp(-0.5 * ((grid - 1.4) / 0.2) ** 2)
    assert_expectation(theta, float((grid * w).sum() / w.sum()), "posterior mean")


def test_energy_cliff_proposals_diverge_and_are_rejected():
    t = Target({"x": dist.Normal(0.0, 1.0)}, lambda v: -2000.0 * (v["x"] > 1.0).double())
    r = run_batched_hmc(t, torch.zeros(8, 1, dtype=torch.float64), num_samples=100, warmup_steps=60, seed=3)
    diverging = r.stats["diverging"]
    assert diverging.any()
    assert (r.stats["acceptance_rate"][diverging] == 0).all()
    assert (r.z <= 1.0).all()


def test_same_seed_same_draws_and_global_streams_untouched():
    t, init = boundary_target(), torch.zeros(8, 1, dtype=torch.float64)
    state = torch.random.get_rng_state()
    a = run_batched_hmc(t, init, num_samples=20, warmup_steps=60, seed=7)
    b = run_batched_hmc(t, init, num_samples=20, warmup_steps=60, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.z, b.z)
    for name in STATS:
        np.testing.assert_array_equal(a.stats[name], b.stats[name])
    c = run_batched_hmc(t, init, num_samples=20, warmup_steps=60, seed=8)
    assert not torch.equal(a.z, c.z)
    assert repr(a).startswith("BatchedHMCResult(8 chains × 20 draws × 1 parameters")


@pytest.mark.parametrize(
    ("init_z", "kwargs", "message"),
    [
        (torch.zeros(1, 2), {}, "at least 2"),
        (torch.zeros(0, 2), {}, "at least 2"),
        (torch.zeros(4), {}, r"shape \(K, 2\)"),
        (torch.zeros(4, 3), {}, r"shape \(K, 2\)"),
        (np.zeros((4, 2)), {}, "ndarray"),
        (torch.tensor([[0.0, 0.0], [math.nan, 0.0], [0.0, 1e200], [0.0, 0.0]]), {}, "2 of 4 chains"),
        (torch.zeros(4, 2), {"num_samples": 0}, "num_samples"),
        (torch.zeros(4, 2), {"warmup_steps": -1}, "warmup_steps"),
        (torch.zeros(4, 2), {"seed": 1.5}, "seed"),
    ],
)
def test_bad_inputs_are_named(init_z, kwargs, message):
    options = {"num_samples": 5, "warmup_steps": 0, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        run_batched_hmc(gaussian_target(), init_z, **options)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_accept_prob", 1.0),
        ("target_accept_prob", 0.0),
        ("max_leapfrog_steps", 0),
        ("max_leapfrog_steps", 2.5),
        ("init_step_size", -0.1),
        ("init_step_size", math.inf),
        ("dense_mass", "yes"),
        ("criterion", "ess"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BatchedHMCConfig(**{field: value})


@pytest.mark.parametrize("criterion", ["chees", "chees_per_gradient"])
def test_trajectory_length_gradient_matches_autograd(criterion):
    """The criterion's gradient in ``log T`` against autograd, on the exact flow of a unit Gaussian.

    There ``y(t) = y₀ cos t + p₀ sin t`` with velocity ``ẏ``; the chains' means that centre ``y``
    are estimates, held fixed (as in the ChEES paper), and the proposals are weighted by made-up
    acceptance probabilities.
    """
    from gmmpyro.inference.chees import _CRITERION_POWER, _chees_gradient

    generator = torch.Generator().manual_seed(3)
    y0, p0 = (torch.randn(16, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    accept = torch.rand(16, generator=generator, dtype=torch.float64)
    power = _CRITERION_POWER[criterion]
    log_t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    t = log_t.exp()
    y1, v1 = y0 * t.cos() + p0 * t.sin(), -y0 * t.sin() + p0 * t.cos()
    c0 = y0 - y0.mean(0)
    c1 = y1 - ((accept[:, None] * y1).sum(0) / accept.sum()).detach()
    per_chain = 0.25 * (c1.square().sum(-1) - c0.square().sum(-1)).square() / t**power
    (expected,) = torch.autograd.grad((accept * per_chain).sum() / accept.sum(), log_t)
    mean_accept, got = _chees_gradient(y0, y1.detach(), v1.detach(), accept, float(t.detach()), power)
    assert mean_accept == pytest.approx(float(accept.mean()), rel=1e-12)
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_trajectory_length_keeps_clear_of_exploratory_step_sizes():
    """Dual averaging's first steps try up to ~10× the searched step size; ``T`` is not dragged along.

    With every proposal accepted the step size grows at once; a zero criterion gradient leaves
    ``T`` where it started (before, it was clipped to at least the current step size).
    """
    from gmmpyro.inference.chees import _Adaptation

    adaptation = _Adaptation(0.5, 1.0, BatchedHMCConfig())
    for _ in range(3):
        adaptation.update(mean_accept=1.0, chees_grad=0.0)
    assert adaptation.step_size > 2.0
    assert adaptation.trajectory_length == pytest.approx(1.0)
    assert adaptation.final()[1] == pytest.approx(1.0)
    assert adaptation.restart(0.25).trajectory_length == pytest.approx(1.0)  # T = max(ε, 1)
    assert adaptation.restart(3.0).trajectory_length == pytest.approx(3.0)
