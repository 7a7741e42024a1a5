"""Tests of the exact toy density and sampler (SPEC §6, journal Appendix A with errata).

The reference densities and CDFs below are written independently from the SPEC text with
numpy/scipy (scipy's truncexpon/truncnorm, quadrature of the unnormalised x2 and x3 shapes),
so the model's closed forms (the paper's f2, the plateau normaliser and inverse CDF) are
checked, not just re-used.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from gmmpyro.observables import Observable
from gmmpyro.protocols import ConditionalDensity, PreparedEvents
from gmmpyro.toy import ToyModel, _f2, _x2_icdf, paper_config, paper_training_config

SIGMA1 = 0.2
ALPHA3, BETA3, GAMMA3 = 10.0, 1.0, 1.0

# (x3_shift, theta) pairs: both parametrisations, |cx| and |cy| at the grid edges and off-grid
CASES = [
    (None, (0.0, 0.0)),
    (None, (-1.2, 0.8)),
    (None, (1.5, -1.5)),
    (0.5, (0.3, -0.4, 1.5)),
]
CASE_IDS = ["origin", "off-grid", "corner", "nu"]
# beyond theta_bounds the density stays defined while (0.4 cx)^2 + (0.5 cy)^2 <= 1:
# |cx| = 2 is the rate k = 0 (uniform x0), |cx| > 2 a rising exponential (k < 0)
WIDE_CASES = [*CASES, (None, (2.0, 0.3)), (None, (-2.2, 0.3))]
WIDE_IDS = [*CASE_IDS, "k=0", "k<0"]


# ---------------------------------------------------------------- independent references
def _p2_shape(x, cx, cy):
    return (1 + 4 * x**2 / math.pi**2 - 5 * x**4 / math.pi**4) * (
        1 + 0.4 * cx * np.sin(x) + 0.5 * cy * np.cos(x)
    )


def _q3_shape(t):
    # 1/(1 + e^z) written as expit(-z) to avoid overflow warnings in the far tails
    return special.expit(-(ALPHA3 * (t - BETA3) - GAMMA3)) * special.expit(ALPHA3 * (t + BETA3) + GAMMA3)


def _x3_shift(theta, x1p, x2, x3_shift):
    cx, cy = theta[0], theta[1]
    shift = 0.6 * (math.sqrt(4 + abs(cx)) + abs(cy)) * (x1p + x2 / math.pi)
    if x3_shift is not None:
        shift = shift - x3_shift * theta[2]
    return shift  # p3(x3) = q3(x3 + shift)


def _reference_log_prob(x, theta, x3_shift):
    """log p(x | θ) from SPEC §6 with scipy distributions and quadrature normalisers."""
    cx, cy = theta[0], theta[1]
    x0p, x1p, x2, x3 = (x[:, 0] - 100) / 700, (x[:, 1] - 100) / 700, x[:, 2], x[:, 3]
    k = 2 * (2 - abs(cx))
    lp0 = stats.truncexpon(b=k, scale=1 / k).logpdf(x0p) - math.log(700)
    lp1 = stats.truncnorm(-x0p / SIGMA1, (1 - x0p) / SIGMA1, loc=x0p, scale=SIGMA1).logpdf(x1p) - math.log(
        700
    )
    t, w = np.polynomial.legendre.leggauss(64)  # exact for this entire integrand to ~1e-15
    z2 = math.pi * (w * _p2_shape(math.pi * t, cx, cy)).sum()
    lp2 = np.log(_p2_shape(x2, cx, cy) / z2)
    z3 = integrate.quad(_q3_shape, -20, 20, points=[-BETA3, BETA3], epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    lp3 = np.log(_q3_shape(x3 + _x3_shift(theta, x1p, x2, x3_shift)) / z3)
    return lp0 + lp1 + lp2 + lp3


def _tabulated_cdf(shape, lo, hi, n=200_001):
    """CDF of an unnormalised 1-D density by cumulative trapezoid; error O(h^2) ~ 1e-9 here."""
    grid = np.linspace(lo, hi, n)
    cdf = integrate.cumulative_trapezoid(shape(grid), grid, initial=0.0)
    return lambda v: np.interp(v, grid, cdf / cdf[-1])


def _reference_pit(x, theta, x3_shift):
    """Probability-integral transform of each conditional: iid U(0, 1) columns if x ~ p(x | θ)."""
    cx, cy = theta[0], theta[1]
    x0p, x1p, x2, x3 = (x[:, 0] - 100) / 700, (x[:, 1] - 100) / 700, x[:, 2], x[:, 3]
    k = 2 * (2 - abs(cx))
    u0 = stats.truncexpon(b=k, scale=1 / k).cdf(x0p)
    u1 = stats.truncnorm(-x0p / SIGMA1, (1 - x0p) / SIGMA1, loc=x0p, scale=SIGMA1).cdf(x1p)
    u2 = _tabulated_cdf(lambda v: _p2_shape(v, cx, cy), -math.pi, math.pi)(x2)
    u3 = _tabulated_cdf(_q3_shape, -8.0, 8.0)(x3 + _x3_shift(theta, x1p, x2, x3_shift))
    return np.stack([u0, u1, u2, u3], 1)


# ---------------------------------------------------------------- density
@pytest.mark.parametrize(("x3_shift", "theta"), WIDE_CASES, ids=WIDE_IDS)
def test_density_integrates_to_one(x3_shift, theta):
    """4-D product quadrature of exp(log_prob) over the whole support.

    Gauss-Legendre in x0 (20 nodes), x1 (32), x2 (20) -- the integrands are entire functions
    (exponential, Gaussian of width 0.2, polynomial x trig) so these rules are exact to ~1e-13
    (doubling the nodes changes the result by < 1e-12) -- and the trapezoid rule in x3 on
    [-12, 12] with h = 0.08: the plateau edges are logistic with poles at distance π/α3 from
    the real axis, so the error is ~exp(-2π(π/α3)/h) = 2e-11, and the tails beyond ±12 are
    < e^-40. Tolerance 1e-9 leaves a margin of ~50 over these bounds.
    """
    model = ToyModel(x3_shift=x3_shift)
    gl = np.polynomial.legendre.leggauss

    def nodes(n, lo, hi):
        t, w = gl(n)
        return torch.tensor(lo + (hi - lo) * (t + 1) / 2), torch.tensor(w * (hi - lo) / 2)

    x0, w0 = nodes(20, 100.0, 800.0)
    x1, w1 = nodes(32, 100.0, 800.0)
    x2, w2 = nodes(20, -math.pi, math.pi)
    x3 = torch.linspace(-12.0, 12.0, 301, dtype=torch.float64)
    w3 = torch.full_like(x3, 24.0 / 300)
    w3[[0, -1]] /= 2
    mesh = torch.stack(torch.meshgrid(x1, x2, x3, indexing="ij"), -1)  # 32 20 301 3
    weights = w1[:, None, None] * w2[None, :, None] * w3[None, None, :]
    total = 0.0
    for xi, wi in zip(x0, w0, strict=True):
        x = torch.cat([xi.expand(*mesh.shape[:-1], 1), mesh], -1)  # 32 20 301 4
        total += float(wi * (model.log_prob(x, theta).exp() * weights).sum())
    assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(("x3_shift", "theta"), CASES, ids=CASE_IDS)
def test_log_prob_matches_independent_reference(x3_shift, theta):
    """Pointwise agreement with scipy truncexpon/truncnorm and quadrature-normalised shapes.

    Both sides are float64 closed forms or adaptive quadrature to 1e-14, so they should agree
    to ~1e-12; 1e-9 allows for log of quad normalisers and scipy's truncnorm tails.
    """
    model = ToyModel(x3_shift=x3_shift)
    x = model.sample(500, theta, seed=11)
    x = torch.cat([x, x[:100] + torch.tensor([0.0, 0.0, 0.0, 4.0])])  # and the x3 tails, down to ~e^-40
    expected = _reference_log_prob(x.numpy(), theta, x3_shift)
    np.testing.assert_allclose(model.log_prob(x, theta).numpy(), expected, rtol=0, atol=1e-9)


def test_outside_support_is_minus_inf_and_never_nan():
    model = ToyModel(x3_shift=1.0)
    theta = torch.tensor([0.4, -0.7, 0.5], dtype=torch.float64, requires_grad=True)
    inside = [300.0, 400.0, 1.0, 0.0]
    bad = [
        [99.9, 400.0, 1.0, 0.0],
        [800.1, 400.0, 1.0, 0.0],
        [300.0, 99.0, 1.0, 0.0],
        [300.0, 1e6, 1.0, 0.0],
        [300.0, 400.0, 3.1416, 0.0],
        [300.0, 400.0, -3.1416, 0.0],
        [300.0, 400.0, 1.0, math.inf],
        [-math.inf, 400.0, 1.0, 0.0],
    ]
    x = torch.tensor([inside, *bad], dtype=torch.float64)
    lp = model.log_prob(x, theta)
    assert torch.isfinite(lp[0])
    assert torch.isneginf(lp[1:]).all()
    far = torch.tensor([300.0, 400.0, 1.0, 1e300], dtype=torch.float64)  # inside R: log density finite
    assert -math.inf < model.log_prob(far, theta.detach()) < -1e300
    # the support edges are inside: finite densities at x0, x1 = 100 and 800
    edges = torch.tensor([[100.0, 800.0, 0.0, 0.0], [800.0, 100.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.isfinite(model.log_prob(edges, theta.detach())).all()
    (grad,) = torch.autograd.grad(lp[1:].sum(), theta)
    assert not torch.isnan(grad).any()
    # θ where p(x2 | c) would be negative somewhere: zero likelihood, not NaN, finite gradient
    theta_bad = torch.tensor([0.0, 2.5, 0.0], dtype=torch.float64, requires_grad=True)
    lp_bad = model.log_prob(x, theta_bad)
    assert torch.isneginf(lp_bad).all()
    (grad,) = torch.autograd.grad(lp_bad.sum(), theta_bad)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("x3_shift", [None, 0.7])
def test_gradient_matches_finite_differences(x3_shift):
    model = ToyModel(x3_shift=x3_shift)
    theta0 = [0.6, -0.9, 0.4][: len(model.params)]  # away from the |c| kinks at 0
    x = model.sample(20, theta0, seed=3)
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model.log_prob(x, t), (theta,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_broadcasting_shapes_and_list_inputs():
    model = ToyModel()
    x = model.sample(5, [0.0, 0.0], seed=0)  # N 4
    theta = torch.tensor([[0.0, 0.0], [0.5, -1.0], [-1.5, 1.5]], dtype=torch.float64)  # G 2
    lp = model.log_prob(x, theta[:, None, :])  # G N
    assert lp.shape == (3, 5)
    for g in range(3):
        torch.testing.assert_close(lp[g], model.log_prob(x, theta[g]))
    assert model.log_prob(x, [0.5, -1.0]).shape == (5,)
    assert model.log_prob(x[0].tolist(), theta).shape == (3,)
    assert model.log_prob(x.numpy(), theta.numpy()[:, None]).shape == (3, 5)
    with pytest.raises(ValueError, match="broadcast"):
        model.log_prob(x, theta)  # (5,) against (3,)


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_sample_shape_dtype_and_shape_law(batch):
    model = ToyModel(x3_shift=0.5)
    theta = torch.zeros(*batch, 3)
    x = model.sample(7, theta, seed=0)
    assert x.shape == (7, *batch, 4)
    assert x.dtype == torch.float64 and x.device == model.device
    lp = model.log_prob(x, theta)
    assert lp.shape == (7, *batch)
    assert torch.isfinite(lp).all()
    assert model.sample(0, theta, seed=0).shape == (0, *batch, 4)


def test_sample_seed_reproducible_and_no_global_rng_use():
    model = ToyModel()
    state = torch.get_rng_state()
    a = model.sample(100, [0.3, 0.3], seed=5)
    b = model.sample(100, [0.3, 0.3], seed=5)
    c = model.sample(100, [0.3, 0.3], seed=6)
    d = model.sample(100, [0.3, 0.3])
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert torch.equal(state, torch.get_rng_state())


def test_float32_model():
    model = ToyModel(dtype=torch.float32)
    x = model.sample(2000, [1.5, -1.5], seed=0)
    assert x.dtype == torch.float32
    lp = model.log_prob(x, [1.5, -1.5])
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()
    model.prepare(x)  # every sample, rounded to float32, still lies inside the bounds


def test_bad_inputs_raise():
    model = ToyModel()
    x = model.sample(4, [0.0, 0.0], seed=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        model.log_prob(x[:, :3], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\).*cx"):
        model.log_prob(x, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        model.log_prob(x, torch.tensor(0.0))
    x_nan = x.clone()
    x_nan[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"NaN.*x2"):
        model.log_prob(x_nan, [0.0, 0.0])
    with pytest.raises(ValueError, match=r"NaN.*cy"):
        model.log_prob(x, [0.0, math.nan])
    with pytest.raises(ValueError, match="NaN/inf"):
        model.sample(3, [math.inf, 0.0])
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="non-negative int"):
            model.sample(n, [0.0, 0.0])
    with pytest.raises(ValueError, match="density"):
        model.sample(3, [0.0, 2.5])
    with pytest.raises(ValueError, match="sigma1"):
        ToyModel(sigma1=0.0)
    with pytest.raises(ValueError, match="x3_shift"):
        ToyModel(x3_shift=math.nan)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model.prepare(x[0])
    x_out = x.clone()
    x_out[0, 2] = 4.0
    with pytest.raises(ValueError, match="'x2'"):
        model.prepare(x_out)
    with pytest.raises(ValueError, match=r"\(G, 2\)"):
        model.grid_dataset(2, grid=[0.0, 0.0])


def test_nu_shifts_x3_up_by_x3_shift_times_nu():
    shift = 0.7
    model = ToyModel(x3_shift=shift)
    x = model.sample(200, [0.4, -1.1, 0.0], seed=2)
    for nu in (-3.0, 0.25, 4.0):
        moved = x.clone()
        moved[:, 3] += shift * nu
        torch.testing.assert_close(
            model.log_prob(moved, [0.4, -1.1, nu]), model.log_prob(x, [0.4, -1.1, 0.0]), rtol=0, atol=1e-12
        )
        x_nu = model.sample(200, [0.4, -1.1, nu], seed=2)  # same uniforms
        torch.testing.assert_close(x_nu[:, :3], x[:, :3], rtol=0, atol=0)
        torch.testing.assert_close(x_nu[:, 3] - x[:, 3], torch.full((200,), shift * nu, dtype=torch.float64))
    # nu = 0 reproduces the two-parameter model
    torch.testing.assert_close(model.log_prob(x, [0.4, -1.1, 0.0]), ToyModel().log_prob(x, [0.4, -1.1]))


# ---------------------------------------------------------------- sampler vs density
@pytest.mark.parametrize(("x3_shift", "theta"), CASES, ids=CASE_IDS)
def test_sampler_matches_density_pit_ks(x3_shift, theta):
    """Each conditional's probability-integral transform of exact samples is U(0, 1).

    n = 20000 events: a Kolmogorov-Smirnov test at alpha = 1e-3 then detects any conditional
    CDF error larger than its critical distance 1.95/sqrt(n) = 0.014. The seed is fixed, so
    the test is deterministic; under a correct sampler a random seed would fail one of the
    16 tests with probability ~1.6 %. The tabulated reference CDFs are accurate to ~1e-9.
    """
    model = ToyModel(x3_shift=x3_shift)
    x = model.sample(20_000, theta, seed=1234).numpy()
    u = _reference_pit(x, theta, x3_shift)
    for i in range(4):
        assert stats.kstest(u[:, i], "uniform").pvalue > 1e-3, f"x{i}"
    # the conditionals are jointly right only if the transforms are also independent
    corr = np.corrcoef(u.T)[np.triu_indices(4, 1)]
    assert np.abs(corr).max() < 4.5 / math.sqrt(len(u))  # 4.5 sigma of a null correlation


def test_x3_marginal_matches_integrated_density():
    """x3 marginal of samples vs the marginal CDF from integrating the density over x1, x2.

    The x3 CDF given (x1, x2) is the tabulated plateau CDF; averaging it over a 64 x 64
    Gauss-Legendre grid in (x1, x2) weighted by p(x1) p(x2) (p(x1) itself from a 64-node rule
    over x0) and interpolating linearly on 2001 x3 points gives the marginal CDF to ~1e-4,
    far below the KS critical distance 1.95/sqrt(n) = 0.014 at alpha = 1e-3, n = 20000.
    """
    theta = (-0.8, 1.2)
    model = ToyModel()
    x3 = model.sample(20_000, theta, seed=77)[:, 3].numpy()
    t, w = np.polynomial.legendre.leggauss(64)
    xp, wp = (t + 1) / 2, w / 2  # on [0, 1]
    k = 2 * (2 - abs(theta[0]))
    p0 = stats.truncexpon(b=k, scale=1 / k).pdf(xp)
    p1 = np.array(
        [(wp * p0 * stats.truncnorm.pdf(v, -xp / SIGMA1, (1 - xp) / SIGMA1, xp, SIGMA1)).sum() for v in xp]
    )
    x2 = math.pi * t
    p2 = _p2_shape(x2, *theta) * math.pi * w
    p2 /= p2.sum()
    q3_cdf = _tabulated_cdf(_q3_shape, -8.0, 8.0)
    shifts = np.array([[_x3_shift(theta, a, b, None) for b in x2] for a in xp])  # 64 64
    weights = (wp * p1)[:, None] * p2[None, :]

    v = np.linspace(-10.0, 8.0, 2001)
    table = (q3_cdf(v[:, None, None] + shifts[None]) * weights[None]).sum((1, 2)) / weights.sum()
    assert table[0] < 1e-12 and table[-1] > 1 - 1e-12
    assert stats.kstest(x3, lambda s: np.interp(s, v, table)).pvalue > 1e-3


def test_x2_inverse_cdf_round_trip():
    """The numerical inversion of the paper's I2 is accurate to ~1e-12 (requested: 1e-10)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(20_000, generator=gen, dtype=torch.float64)
    # 0.9999999880585512 at (-1.5, 1.5) once made Newton ping-pong on rounding noise near +π
    edges = [0.0, 1e-17, 1e-9, 0.5, 0.9999999880585512, 1 - 1e-12, 1.0]
    u = torch.cat([u, torch.tensor(edges, dtype=torch.float64)])
    for cx, cy in [(0.0, 0.0), (1.5, -1.5), (-1.5, 1.5), (-0.3, 0.9)]:
        cxt, cyt = torch.tensor(cx, dtype=torch.float64), torch.tensor(cy, dtype=torch.float64)
        x = _x2_icdf(u, cxt, cyt, max_iter=60)  # raises if any value needs more steps
        lo, hi = (_f2(torch.tensor(v, dtype=torch.float64), cxt, cyt) for v in (-math.pi, math.pi))
        cdf = (_f2(x, cxt, cyt) - lo) / (hi - lo)
        assert (x >= -math.pi).all() and (x <= math.pi).all()
        assert (cdf - u).abs().max() < 1e-13
        ref = _tabulated_cdf(lambda v, cx=cx, cy=cy: _p2_shape(v, cx, cy), -math.pi, math.pi)
        assert np.abs(ref(x.numpy()) - u.numpy()).max() < 1e-8  # the paper's f2 is the right CDF


def test_paper_misprints_are_really_wrong():
    """Each SPEC §6 erratum: the printed version fails where the corrected one passes."""
    cx = -1.0
    k = 2 * (2 - abs(cx))

    # 1. x0' = 2(x0 - 100)/700 - 1 does not give a normalised p(x0)
    def p0_printed(x0):
        return k / (1 - math.exp(-k)) * math.exp(-k * (2 * (x0 - 100) / 700 - 1)) / 700

    assert abs(integrate.quad(p0_printed, 100, 800)[0] - 1) > 0.5

    # 2. q3 with (t - β3) in both factors is not normalised by 2(α3β3 + γ3) f3
    a3 = ALPHA3 * BETA3 + GAMMA3
    norm = 2 * a3 * math.exp(2 * a3) / (math.exp(2 * a3) - 1) / ALPHA3

    def q3_printed(t):
        return (
            1 / (1 + math.exp(ALPHA3 * (t - BETA3) - GAMMA3)) / (1 + math.exp(-ALPHA3 * (t - BETA3) - GAMMA3))
        )

    assert abs(integrate.quad(q3_printed, -20, 20, points=[BETA3])[0] / norm - 1) > 0.5
    assert integrate.quad(_q3_shape, -20, 20, points=[-BETA3, BETA3])[0] / norm == pytest.approx(1, abs=1e-12)

    # 3. and 4. the printed samplers (rate 2(2 - cx), raw x1* + x2* shift) disagree with the density
    theta = (cx, 0.5)
    gen = np.random.default_rng(0)
    i0, i3 = gen.random(20_000), gen.random(20_000)
    x0_printed = 100 - 700 / (2 * (2 - cx)) * np.log(1 - i0 * (1 - math.exp(-k)))
    x = ToyModel().sample(20_000, theta, seed=0).numpy()
    u0 = stats.truncexpon(b=k, scale=1 / k).cdf((x0_printed - 100) / 700)
    assert stats.kstest(u0, "uniform").pvalue < 1e-6
    h3 = np.exp(a3 * (2 * i3 - 1))
    t = np.log((h3 * math.exp(a3) - 1) / (math.exp(a3) - h3)) / ALPHA3  # A.8 itself is right
    s = 0.6 * (math.sqrt(4 + abs(cx)) + abs(theta[1]))
    x3_printed = t - s * (x[:, 1] + x[:, 2])
    u3 = _reference_pit(np.column_stack([x[:, :3], x3_printed]), theta, None)[:, 3]
    assert stats.kstest(u3, "uniform").pvalue < 1e-6
    u3_corrected = _reference_pit(
        np.column_stack([x[:, :3], t - s * ((x[:, 1] - 100) / 700 + x[:, 2] / math.pi)]), theta, None
    )[:, 3]
    assert stats.kstest(u3_corrected, "uniform").pvalue > 1e-3


# ---------------------------------------------------------------- API surface
def test_observables_params_bounds_and_protocol():
    for x3_shift, k in ((None, 2), (1.0, 3)):
        model = ToyModel(x3_shift=x3_shift)
        obs = model.observables()
        assert obs is model.observables and len(obs) == 4 and isinstance(obs, tuple)
        assert all(isinstance(o, Observable) for o in obs)
        assert [o.name for o in obs] == ["x0", "x1", "x2", "x3"]
        assert model.observables[0].bounds == (100.0, 800.0) and model.observables[2].bounds == (
            -math.pi,
            math.pi,
        )
        assert model.observables[3].bounds is None and all(o.f == 0.5 for o in obs)
        assert model.params == ("cx", "cy", "nu")[:k]
        expected = [[-1.5, 1.5], [-1.5, 1.5], [-5.0, 5.0]][:k]
        torch.testing.assert_close(model.theta_bounds, torch.tensor(expected, dtype=torch.float64))
        assert model.dtype == torch.float64 and model.device == torch.device("cpu")
        assert isinstance(model, ConditionalDensity)
        assert "ToyModel(" in repr(model)


def test_prepare_matches_log_prob():
    model = ToyModel(x3_shift=0.3)
    x = model.sample(50, [0.2, 0.1, -1.0], seed=4)
    prepared = model.prepare(x)
    assert isinstance(prepared, PreparedEvents) and prepared.n_events == 50
    theta = torch.tensor([[0.2, 0.1, -1.0], [1.0, -1.0, 2.0]], dtype=torch.float64)
    lp = prepared.log_prob(theta)  # G N
    assert lp.shape == (2, 50)
    torch.testing.assert_close(lp, model.log_prob(x, theta[:, None]))
    assert prepared.log_prob(torch.zeros(4, 2, 3)).shape == (4, 2, 50)
    theta.requires_grad_(True)
    (grad,) = torch.autograd.grad(prepared.log_prob(theta).sum(), theta)
    assert torch.isfinite(grad).all()


def test_grid_dataset():
    model = ToyModel()
    x, theta = model.grid_dataset(3, seed=0)
    assert x.shape == (147, 4) and theta.shape == (147, 2)
    points = torch.unique(theta, dim=0)
    values = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    assert points.shape == (49, 2)
    torch.testing.assert_close(points, torch.cartesian_prod(values, values))
    assert (theta.view(49, 3, 2) == theta.view(49, 3, 2)[:, :1]).all()  # grid-point major
    assert torch.isfinite(model.log_prob(x, theta)).all()
    x2, _ = model.grid_dataset(3, seed=0)
    assert torch.equal(x, x2)

    model_nu = ToyModel(x3_shift=1.0)
    x, theta = model_nu.grid_dataset(2, seed=1)
    assert x.shape == (98, 4) and theta.shape == (98, 3) and (theta[:, 2] == 0).all()
    x, theta = model_nu.grid_dataset(4, grid=[[0.0, 0.0, -1.0], [0.5, 0.5, 2.0]], seed=1)
    assert theta.shape == (8, 3) and theta[:4, 2].eq(-1).all() and theta[4:, 2].eq(2).all()
    _, theta = model_nu.grid_dataset(1, grid=[[0.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(theta[:, 2], torch.zeros(2, dtype=torch.float64))


def test_paper_config():
    """Table 5 of the journal paper: network constants and training settings."""
    config = paper_config()
    assert config == ToyModel.paper_config()
    table5 = {"n_gauss": 20, "A1": 50, "A2": 0, "B1": 50, "B2": 20, "C": 2, "D": 3}
    table5 |= {"s_f": 0.01, "s_mu": 0.01, "s_sigma": 0.01, "f_sigma": 0.25}
    assert {name: getattr(config, name) for name in table5} == table5
    training = paper_training_config()
    assert training.batch_size == 500 and training.learning_rate == 1e-3
    assert training.lr_factor == 0.5 and training.lr_patience == 2
    assert paper_training_config(max_epochs=3).max_epochs == 3
