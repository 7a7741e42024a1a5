"""GMMDistribution: a conditional density as a Pyro distribution.

Every test takes the density from the ``model`` fixture (``MODELS``), so that a trained
DensityModel can join the battery next to the exact toy.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers import trained_toy_model
from pyro import poutine
from scipy import stats

from gmmpyro.distribution import GMMDistribution, ProductSupport
from gmmpyro.toy import ToyModel

# name -> factory(dtype, device) of a ConditionalDensity over (cx, cy)
MODELS = {
    "toy": lambda dtype, device: ToyModel(dtype=dtype, device=device),
    "trained": lambda dtype, device: trained_toy_model(dtype, str(device)),
}


@pytest.fixture(params=sorted(MODELS))
def model(request, dtype, device):
    """Each density on the ``--device`` in the ``--dtype`` of the test run."""
    return MODELS[request.param](dtype, device)


def _theta(model, *rows) -> torch.Tensor:
    """Parameter points, away from the toy's |c| kinks so finite differences are smooth."""
    return torch.tensor(rows, dtype=model.dtype, device=model.device)


def _events(model, n: int, theta, seed: int = 0) -> torch.Tensor:
    return model.sample(n, torch.as_tensor(theta, dtype=model.dtype, device=model.device), seed=seed)


class _Counting:
    """Wraps ``model.prepare`` and ``model.log_prob`` to count calls (instance attributes)."""

    def __init__(self, model, monkeypatch) -> None:
        self.prepare = self.log_prob = 0
        prepare, log_prob = model.prepare, model.log_prob

        def counted_prepare(x):
            self.prepare += 1
            return prepare(x)

        def counted_log_prob(x, theta):
            self.log_prob += 1
            return log_prob(x, theta)

        monkeypatch.setattr(model, "prepare", counted_prepare)
        monkeypatch.setattr(model, "log_prob", counted_log_prob)


# ------------------------------------------------------------------------------ log_prob


def test_log_prob_equals_model_log_prob_on_prepared_and_direct_path(model, monkeypatch):
    theta = _theta(model, 0.7, -0.6)
    x = _events(model, 200, theta)  # N d
    expected = model.log_prob(x, theta)
    prepared = model.prepare(x)
    calls = _Counting(model, monkeypatch)
    direct = GMMDistribution(model, theta).expand([200]).log_prob(x)
    assert (calls.prepare, calls.log_prob) == (0, 1)
    fast = GMMDistribution(model, theta, prepared=prepared).expand([200])
    by_identity, by_value = fast.log_prob(prepared.events), fast.log_prob(x.clone())
    assert (calls.prepare, calls.log_prob) == (0, 1)  # the prepared path never scores events directly
    for lp in (direct, by_identity, by_value):
        torch.testing.assert_close(lp, expected)


def test_prepared_path_with_batched_theta_scores_every_pair(model):
    x = _events(model, 50, [0.5, 0.5])  # N d
    prepared = model.prepare(x)
    grid = _theta(model, [0.6, -0.4], [-0.8, 0.9], [1.1, 0.3]).unsqueeze(-2)  # G 1 k
    fast = GMMDistribution(model, grid, prepared=prepared).log_prob(x)  # G N
    assert fast.shape == (3, 50)
    torch.testing.assert_close(fast, model.log_prob(x, grid))
    # events in a plate at dim -2 against a θ batch at dim -1: same numbers, transposed
    d2 = GMMDistribution(model, grid.squeeze(-2), prepared=prepared)  # batch (G,)
    torch.testing.assert_close(d2.log_prob(x.unsqueeze(-2)), fast.T)


def test_prepared_path_refuses_other_events_and_per_event_theta(model):
    x = _events(model, 20, [0.5, 0.5])  # N d
    prepared = model.prepare(x)
    theta = _theta(model, 0.7, -0.6)
    changed = x.clone()
    changed[:, 1] = changed[:, 0]  # still inside the support, a different density
    with pytest.raises(ValueError, match="prepared events only"):
        GMMDistribution(model, theta, prepared=prepared).log_prob(changed)
    with pytest.raises(ValueError, match="prepared events only"):
        GMMDistribution(model, theta, prepared=prepared).log_prob(x[:10])
    per_event = _theta(model, *([[0.3 + 0.02 * i, -0.5] for i in range(20)]))  # N k
    with pytest.raises(ValueError, match="per-event"):
        GMMDistribution(model, per_event, prepared=prepared).log_prob(x)
    torch.testing.assert_close(GMMDistribution(model, per_event).log_prob(x), model.log_prob(x, per_event))


def test_prepared_events_of_another_model_are_refused():
    toy, other = ToyModel(), ToyModel()
    prepared = other.prepare(other.sample(5, [0.0, 0.0], seed=0))
    with pytest.raises(ValueError, match="another model"):
        GMMDistribution(toy, torch.zeros(2, dtype=torch.float64), prepared=prepared)
    with pytest.raises(TypeError, match=r"model\.prepare"):
        GMMDistribution(toy, torch.zeros(2, dtype=torch.float64), prepared=object())


def test_prepared_events_outside_the_support_follow_validate_args():
    model = trained_toy_model()
    x = _events(model, 10, [0.5, 0.5])
    x[3, 0] = model.observables[0].bounds[1] + 1.0  # outside x0's domain
    prepared = model.prepare(x)
    assert not prepared.all_inside
    theta = _theta(model, 0.5, 0.5)
    with pytest.raises(ValueError, match="support"):
        GMMDistribution(model, theta, prepared=prepared, validate_args=True).log_prob(x)
    lp = GMMDistribution(model, theta, prepared=prepared, validate_args=False).log_prob(x)
    assert lp[3] == -math.inf and torch.isfinite(lp[torch.arange(10) != 3]).all()


def test_scoring_leaves_no_state_on_the_model(model):
    x = _events(model, 30, [0.5, 0.5])
    before = set(vars(model))
    d = GMMDistribution(model, _theta(model, 0.5, 0.5))
    for _ in range(3):
        d.log_prob(x)
    model.prepare(x)
    assert set(vars(model)) == before


def test_model_distribution_takes_prepared_events():
    model = trained_toy_model()
    x = _events(model, 30, [0.5, 0.5])
    prepared = model.prepare(x)
    theta = _theta(model, 0.2, 0.3)
    torch.testing.assert_close(
        model.distribution(theta, prepared=prepared).log_prob(x), model.distribution(theta).log_prob(x)
    )


# ------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("sample_shape", [(), (5,), (4, 2)])
def test_shape_law(model, batch_shape, sample_shape):
    k, d_ = len(model.params), len(model.observables)
    theta = (
        torch.rand(*batch_shape, k, dtype=model.dtype, generator=torch.Generator().manual_seed(0)) - 0.5
    ) * 2
    d = GMMDistribution(model, theta)
    assert d.batch_shape == batch_shape and d.event_shape == (d_,)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + batch_shape + (d_,)
    lp = d.log_prob(x)
    assert lp.shape == sample_shape + batch_shape
    assert torch.isfinite(lp).all()
    assert bool(d.support.check(x).all())


def test_value_broadcasts_against_batch_shape(model):
    theta = _theta(model, [0.5, 0.5], [-0.5, 0.9], [1.0, -1.0])  # 3 k
    d = GMMDistribution(model, theta)
    x = _events(model, 7, [0.0, 0.0])  # 7 d
    assert d.log_prob(x.unsqueeze(1)).shape == (7, 3)
    assert d.log_prob(x[0]).shape == (3,)
    with pytest.raises(ValueError, match="broadcast"):
        d.log_prob(x)  # (7,) against batch (3,)


def test_sampling_is_reproducible_with_pyro_seed(model):
    d = GMMDistribution(model, _theta(model, 0.5, -0.5))
    pyro.set_rng_seed(123)
    a = d.sample((10,))
    pyro.set_rng_seed(123)
    b = d.sample((10,))
    torch.testing.assert_close(a, b)
    assert not d.sample((2,)).requires_grad


def _pit_of_full_conditionals(model, theta, x, n_grid=1201):
    """PIT ``u_j = F(x_j | x_-j)`` of every column, by quadrature of the joint density in ``x_j``.

    If ``x ~ p(· | θ)``, each ``u_j`` is exactly Uniform(0, 1); matching all full conditionals
    pins down the joint (Brook's lemma). Continuous observables only.
    """
    d = GMMDistribution(model, theta)
    n = x.shape[0]
    pits = []
    for j, obs in enumerate(model.observables):
        if obs.bounds is not None:
            lo, hi = obs.bounds
        else:  # the samples' range, widened by half of itself on both sides
            span = float(x[:, j].max() - x[:, j].min())
            lo, hi = float(x[:, j].min()) - span / 2, float(x[:, j].max()) + span / 2
        t = torch.linspace(lo, hi, n_grid, dtype=x.dtype)  # Q
        xs = x.unsqueeze(1).repeat(1, n_grid, 1)  # n Q d
        xs[..., j] = t
        with torch.no_grad():
            lp = d.log_prob(xs)  # n Q
        p = (lp - lp.max(-1, keepdim=True).values).exp()
        cdf = torch.cat([torch.zeros(n, 1, dtype=x.dtype), torch.cumulative_trapezoid(p, t, dim=-1)], -1)
        cdf = cdf / cdf[:, -1:]  # n Q
        i = torch.searchsorted(t, x[:, j].contiguous()).clamp(1, n_grid - 1)  # n
        frac = (x[:, j] - t[i - 1]) / (t[i] - t[i - 1])
        rows = torch.arange(n)
        pits.append((cdf[rows, i - 1] + frac * (cdf[rows, i] - cdf[rows, i - 1])).numpy())
    return pits


def test_samples_follow_log_prob_exact_toy():
    """Samples of each batch slot against that slot's log_prob, via conditional PITs + KS.

    With the exact toy density this is a test of the wrapper (slots, shapes, seeds). Pyro's
    nearest-neighbour ``gof`` is biased by the hard bounds and the sharp x3 plateau (its
    p-values are far from uniform for correct samples), so each full conditional is
    integrated numerically instead; the grid error (< 1e-3 in u) is far below the KS
    resolution for 1000 draws (~0.04). A learned model's data-space density has structure
    finer than this grid (the projection's empirical CDF), hence the toy only here and the
    importance-weight test below for every model. 2 slots × 4 columns at p > 1e-3: a false
    alarm once in ~125 seeds.
    """
    model = ToyModel()
    theta = _theta(model, [0.8, -0.8], [-0.8, 0.8])  # 2 k
    d = GMMDistribution(model, theta)
    pyro.set_rng_seed(0)
    x = d.sample((1000,))  # n 2 d
    for b in range(2):
        for j, u in enumerate(_pit_of_full_conditionals(model, theta[b], x[:, b])):
            assert stats.kstest(u, "uniform").pvalue > 1e-3, (b, model.observables[j].name)
    # power: slot 0's draws against slot 1's density are rejected (x2 | rest carries the sign of c)
    wrong = _pit_of_full_conditionals(model, theta[1], x[:, 0])
    assert min(stats.kstest(u, "uniform").pvalue for u in wrong) < 1e-6


def test_samples_follow_log_prob_importance_weights(model):
    """``E_{x ~ p(·|θa)}[p(x|θb) / p(x|θa)] = 1`` for each slot ``a`` and the other slot ``b``.

    Holds exactly when ``sample`` draws what ``log_prob`` describes, whatever the model's
    accuracy; θ-independent factors (the projection's Jacobian) cancel, so it suits learned
    models too. Tolerance: 4 standard errors of the mean weight from 4000 draws.
    """
    theta = _theta(model, [0.6, -0.5], [0.75, -0.35])  # 2 k, close: bounded weights
    d = GMMDistribution(model, theta)
    pyro.set_rng_seed(0)
    x = d.sample((4000,))  # n 2 d
    with torch.no_grad():
        lp = d.log_prob(x.unsqueeze(-2))  # n 2 (drawn from slot) 2 (scored by slot)
    for a, b in ((0, 1), (1, 0)):
        w = (lp[:, a, b] - lp[:, a, a]).double().exp()
        assert abs(float(w.mean()) - 1.0) < 4 * float(w.std()) / math.sqrt(len(w)), (a, float(w.mean()))
    # the slots' draws differ as their densities do: each slot's draws score higher under its own θ
    assert float((lp[:, 0, 0] - lp[:, 0, 1]).mean()) > 0 and float((lp[:, 1, 1] - lp[:, 1, 0]).mean()) > 0


# ------------------------------------------------------------------------------ support


def test_support_is_the_product_of_the_observables_domains(model):
    s = GMMDistribution(model, _theta(model, 0.0, 0.0)).support
    assert isinstance(s, ProductSupport) and s.event_dim == 1
    assert [repr(c) for c in s.columns] == [repr(o.support) for o in model.observables]
    assert s.is_discrete == any(o.discrete for o in model.observables)


def test_product_support_checks_each_column():
    s = ProductSupport(
        [constraints_interval(0.0, 1.0), dist.constraints.real, dist.constraints.integer_interval(0, 3)],
        ["a", "b", "n"],
    )
    x = torch.tensor([[0.5, 9.0, 2.0], [0.5, 9.0, 2.5], [1.5, 0.0, 0.0], [0.0, float("nan"), 3.0]])
    assert s.check(x).tolist() == [True, False, False, False]
    assert s.is_discrete
    assert "n: IntegerInterval" in repr(s)
    with pytest.raises(ValueError, match="observables"):
        s.check(torch.zeros(2, 2))


def constraints_interval(lo, hi):
    return dist.constraints.interval(lo, hi)


def _outside(model, x):
    """``x`` with one value beyond a bound of the first bounded observable."""
    j = next(i for i, o in enumerate(model.observables) if o.bounds is not None)
    bad = x.clone()
    bad[0, j] = model.observables[j].bounds[1] + 1.0
    return bad


def test_validate_args_true_rejects_values_outside_the_support(model):
    theta = _theta(model, 0.5, -0.5)
    bad = _outside(model, _events(model, 5, theta))
    d = GMMDistribution(model, theta, validate_args=True)
    with pytest.raises(ValueError, match="within the support"):
        d.log_prob(bad)
    with pytest.raises(ValueError, match="within the support"):
        d.log_prob(torch.full_like(bad, float("nan")))


def test_validate_args_false_gives_minus_inf_outside_the_support(model):
    theta = _theta(model, 0.5, -0.5)
    x = _events(model, 5, theta)
    bad = _outside(model, x)
    bad[1] = float("nan")
    d = GMMDistribution(model, theta, validate_args=False)
    for _ in range(3):  # the cache must not change this
        lp = d.log_prob(bad)
        assert lp[0] == -math.inf and lp[1] == -math.inf
        torch.testing.assert_close(lp[2:], model.log_prob(x[2:], theta))


def test_arguments_are_checked(model):
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        GMMDistribution(model, torch.zeros(3))
    with pytest.raises(TypeError, match="ConditionalDensity"):
        GMMDistribution(object(), torch.zeros(2))
    with pytest.raises(ValueError, match="theta"):
        GMMDistribution(model, torch.tensor([0.0, float("nan")]), validate_args=True)
    d = GMMDistribution(model, torch.zeros(2))
    assert not d.has_rsample
    with pytest.raises(NotImplementedError):
        d.rsample()
    assert "GMMDistribution" in repr(d) and "cx" in repr(d)


# ------------------------------------------------------------------------------ expand, gradients


def test_expand(model):
    theta = _theta(model, [0.5, -0.5], [0.9, 0.2])  # 2 k
    d = GMMDistribution(model, theta, validate_args=True)
    e = d.expand([4, 2])
    assert isinstance(e, GMMDistribution) and e.batch_shape == (4, 2) and e._validate_args
    assert e.theta.stride(0) == 0  # a view, no copy
    x = e.sample((3,))  # 3 4 2 d
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    assert d.expand_by([5]).batch_shape == (5, 2)
    with pytest.raises(ValueError, match="expand"):
        d.expand([3])


def test_gradients_in_theta(model):
    """Autograd against central differences; step and tolerance follow the model's dtype."""
    theta = _theta(model, 0.7, -0.6)
    x = _events(model, 40, theta)
    double = model.dtype == torch.float64
    eps, rtol = (1e-6, 1e-5) if double else (1e-2, 3e-2)  # float32: roundoff ~ 1e-7 × |sum| / eps

    def total(th):
        return GMMDistribution(model, th).expand([40]).log_prob(x).sum()

    th = theta.clone().requires_grad_()
    total(th), total(th)  # the cached fast path from here on
    (g_fast,) = torch.autograd.grad(total(th), th)
    (g_slow,) = torch.autograd.grad(GMMDistribution(model, th).log_prob(x.clone()).sum(), th)
    torch.testing.assert_close(g_fast, g_slow)
    with torch.no_grad():
        step = torch.eye(2, dtype=theta.dtype, device=theta.device) * eps
        fd = torch.stack([(total(theta + h) - total(theta - h)) / (2 * eps) for h in step])
    assert torch.isfinite(g_fast).all() and g_fast.abs().sum() > 0
    torch.testing.assert_close(g_fast.detach(), fd, rtol=rtol, atol=rtol * float(fd.abs().max()))


# ------------------------------------------------------------------------------ composing in Pyro


def _pyro_model(model, x, rate_per_unit=100.0):
    def fn():
        c = pyro.sample("c", dist.Uniform(-1.5, 1.5).expand([2]).to_event(1))
        rate = pyro.deterministic("rate", rate_per_unit * (1 + 0.2 * c[..., 0]))
        pyro.sample("n", dist.Poisson(rate), obs=torch.tensor(float(len(x))))
        with pyro.plate("events", len(x)):
            pyro.sample("x", GMMDistribution(model, c), obs=x)

    return fn


def test_in_a_plate_with_other_sites_under_trace_and_condition(model):
    c0 = torch.tensor([0.6, -0.7])
    x = _events(model, 60, c0)
    fn = poutine.condition(_pyro_model(model, x), data={"c": c0})
    for _ in range(2):  # second time through the fast path
        tr = poutine.trace(fn).get_trace()
        tr.compute_log_prob()
        site = tr.nodes["x"]
        assert site["fn"].batch_shape == (60,) and site["log_prob"].shape == (60,)
        torch.testing.assert_close(site["log_prob"], model.log_prob(x, c0.to(model.dtype)))
        expected = (
            dist.Uniform(-1.5, 1.5).expand([2]).to_event(1).log_prob(c0)
            + dist.Poisson(100.0 * (1 + 0.2 * c0[0])).log_prob(torch.tensor(60.0))
            + model.log_prob(x, c0.to(model.dtype)).sum()
        )
        torch.testing.assert_close(tr.log_prob_sum().to(expected.dtype), expected)


def test_vectorised_over_a_parameter_plate(model):
    x = _events(model, 25, [0.5, 0.5])

    def fn():
        with pyro.plate("grid", 4, dim=-2):
            c = pyro.sample("c", dist.Uniform(-1.5, 1.5).expand([2]).to_event(1))  # 4 1 2
            with pyro.plate("events", len(x), dim=-1):
                pyro.sample("x", GMMDistribution(model, c), obs=x)

    pyro.set_rng_seed(1)
    tr = poutine.trace(fn).get_trace()
    tr.compute_log_prob()
    c = tr.nodes["c"]["value"].to(model.dtype)
    assert tr.nodes["x"]["log_prob"].shape == (4, 25)
    torch.testing.assert_close(tr.nodes["x"]["log_prob"], model.log_prob(x, c))


def test_validation_follows_pyro(model):
    x = _outside(model, _events(model, 5, [0.5, 0.5]))
    fn = poutine.condition(_pyro_model(model, x), data={"c": torch.tensor([0.5, 0.5])})
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="within the support"):
        poutine.trace(fn).get_trace().compute_log_prob()
    with pyro.validation_enabled(False):
        tr = poutine.trace(fn).get_trace()
        tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"][0] == -math.inf
