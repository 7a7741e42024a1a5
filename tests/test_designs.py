"""Simulation designs in θ and the toy's one-event-per-θ simulator with its exact score.

Statistical tests use fixed seeds, so they are deterministic; each tolerance is derived from
the sample size next to it. The toy's conditional CDFs used below are written independently
of the model (scipy distributions and tabulated shapes from ``test_toy``).
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from test_toy import SIGMA1, _q3_shape, _tabulated_cdf

from gmmpyro import DensityModel, GmmpyroWarning, LatentProjection, NetworkConfig, TrainingConfig, designs
from gmmpyro.toy import ToyModel
from gmmpyro.training import train

BOUNDS = {"cx": (-1.5, 1.5), "mass": (10.0, 20.0), "nu": (-5.0, -4.0)}  # disjoint ranges: column order shows
LOW = torch.tensor([b[0] for b in BOUNDS.values()], dtype=torch.float64)
HIGH = torch.tensor([b[1] for b in BOUNDS.values()], dtype=torch.float64)
RANDOM_DESIGNS = {
    "uniform": designs.uniform,
    "sobol": designs.sobol,
    "latin_hypercube": designs.latin_hypercube,
}


def _unit(theta: torch.Tensor) -> np.ndarray:
    return ((theta - LOW) / (HIGH - LOW)).numpy()


# ---------------------------------------------------------------- designs
@pytest.mark.parametrize("name", sorted(RANDOM_DESIGNS))
@pytest.mark.parametrize("form", ["mapping", "rows", "tensor"])
def test_shapes_dtype_and_bounds(name, form):
    bounds = {
        "mapping": BOUNDS,
        "rows": list(BOUNDS.values()),
        "tensor": torch.tensor(list(BOUNDS.values()), dtype=torch.float32),
    }[form]
    theta = RANDOM_DESIGNS[name](256, bounds, seed=3)
    assert theta.shape == (256, 3) and theta.dtype == torch.float64
    assert ((theta >= LOW) & (theta <= HIGH)).all()
    assert (theta.max(0).values - theta.min(0).values > 0.9 * (HIGH - LOW)).all()  # spread over the box
    assert RANDOM_DESIGNS[name](1, bounds, seed=0).shape == (1, 3)


@pytest.mark.parametrize("name", sorted(RANDOM_DESIGNS))
def test_seeds_reproducible_and_no_global_rng_use(name):
    design = RANDOM_DESIGNS[name]
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b = design(64, BOUNDS, seed=1), design(64, BOUNDS, seed=1)
    c, d, e = design(64, BOUNDS, seed=2), design(64, BOUNDS), design(64, BOUNDS)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(d, e)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(numpy_state, np.random.get_state()[1])


def test_grid_is_the_cartesian_product():
    theta = designs.grid([3, 2, 4], BOUNDS)
    axes = [np.linspace(low, high, n) for (low, high), n in zip(BOUNDS.values(), [3, 2, 4], strict=True)]
    expected = torch.tensor(list(itertools.product(*axes)), dtype=torch.float64)
    assert theta.dtype == torch.float64
    torch.testing.assert_close(theta, expected, rtol=0, atol=1e-15)
    assert designs.grid(5, [(0.0, 1.0)]).shape == (5, 1)
    assert designs.grid(4, BOUNDS).shape == (64, 3)
    # the toy's training grid: the paper's 49 points
    toy_grid = designs.grid(7, ToyModel().theta_bounds)
    values = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
    assert torch.equal(toy_grid, torch.tensor(list(itertools.product(values, values)), dtype=torch.float64))


def test_latin_hypercube_one_point_per_stratum():
    n = 100
    unit = _unit(designs.latin_hypercube(n, BOUNDS, seed=5))
    for axis in range(3):
        assert sorted(np.floor(unit[:, axis] * n).astype(int)) == list(range(n)), axis
    # the strata of different axes are paired at random, not along the diagonal
    assert abs(np.corrcoef(unit.T)[0, 1]) < 4.5 / math.sqrt(n)


@pytest.mark.parametrize("scramble", [True, False])
def test_sobol_dyadic_balance(scramble):
    """n = 2^m: one point per dyadic interval of width 2^-m of every axis, and per dyadic
    box of area 2^-m of the first two axes (a (0, m, 2)-net). Uniform draws almost never are."""
    m = 6
    n = 2**m
    for seed in (0, 1):
        unit = _unit(designs.sobol(n, BOUNDS, seed=seed, scramble=scramble))
        cells = np.floor(unit * n).astype(int)
        for axis in range(3):
            assert sorted(cells[:, axis]) == list(range(n)), axis
        for bits in range(m + 1):
            boxes = np.floor(unit[:, 0] * 2**bits) * 2 ** (m - bits) + np.floor(unit[:, 1] * 2 ** (m - bits))
            assert len(set(boxes.tolist())) == n, bits
    unit = _unit(designs.uniform(n, BOUNDS, seed=0))
    assert len(set(np.floor(unit[:, 0] * n).tolist())) < n


def test_sobol_scrambling():
    plain = designs.sobol(8, BOUNDS, seed=0, scramble=False)
    torch.testing.assert_close(plain[0], LOW)  # the unscrambled sequence starts at the corner
    assert torch.equal(plain, designs.sobol(8, BOUNDS, seed=1, scramble=False))
    assert not torch.equal(designs.sobol(8, BOUNDS, seed=0), designs.sobol(8, BOUNDS, seed=1))


def test_sobol_not_a_power_of_two_warns_and_returns_the_first_points():
    with pytest.warns(GmmpyroWarning, match=r"n = 100 is not a power of two.*n = 64 or 128"):
        theta = designs.sobol(100, BOUNDS, seed=4)
    torch.testing.assert_close(theta, designs.sobol(128, BOUNDS, seed=4)[:100], rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither ours nor scipy's for powers of two
        designs.sobol(1, BOUNDS, seed=0)
        designs.sobol(128, BOUNDS, seed=0)


def test_uniform_moments():
    """n = 20000 per axis: the sample mean has standard error w/sqrt(12 n), the sample variance
    sqrt((μ4 - σ⁴)/n) with μ4 = w⁴/80, σ⁴ = w⁴/144; 4.5 standard errors each."""
    n = 20_000
    unit = _unit(designs.uniform(n, BOUNDS, seed=7))
    assert np.abs(unit.mean(0) - 0.5).max() < 4.5 / math.sqrt(12 * n)
    assert np.abs(unit.var(0) - 1 / 12).max() < 4.5 * math.sqrt((1 / 80 - 1 / 144) / n)
    assert np.abs(np.corrcoef(unit.T)[np.triu_indices(3, 1)]).max() < 4.5 / math.sqrt(n)
    for axis in range(3):
        assert stats.kstest(unit[:, axis], "uniform").pvalue > 1e-3


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ({"cx": (1.0, -1.0)}, r"'cx'.*low < high"),
        ({"cx": (0.0, 1.0), "cy": (2.0, 2.0)}, r"'cy'.*low < high"),
        ([(0.0, 1.0), (0.0, math.inf)], r"parameter 1 must be finite"),
        ([(math.nan, 1.0)], r"parameter 0 must be finite"),
        ([(0.0, 1.0, 2.0)], r"shape \(k, 2\)"),
        ([], r"shape \(k, 2\)"),
        ({"cx": ("a", 1.0)}, "pairs of numbers"),
        ([(0.0, 1.0), (0.0,)], "pairs of numbers"),
    ],
)
def test_bad_bounds_raise(bounds, match):
    for call in (lambda: designs.uniform(4, bounds), lambda: designs.grid(3, bounds)):
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_counts_raise():
    for design in RANDOM_DESIGNS.values():
        for n in (0, -3, 2.5, True, "8"):
            with pytest.raises(ValueError, match=r"n must be an integer >= 1"):
                design(n, BOUNDS)
    with pytest.raises(ValueError, match=r"parameter 1 must be an integer >= 2"):
        designs.grid([3, 1, 3], BOUNDS)
    with pytest.raises(ValueError, match=r"parameter 0 must be an integer >= 2, got 2.5"):
        designs.grid(2.5, BOUNDS)
    with pytest.raises(ValueError, match=r"one count per parameter \(3\), got 2"):
        designs.grid([3, 3], BOUNDS)


# ---------------------------------------------------------------- the toy simulator
def test_simulate_shapes_dtype_and_seed():
    for x3_shift, k in ((None, 2), (0.5, 3)):
        model = ToyModel(x3_shift=x3_shift)
        theta = designs.uniform(50, model.theta_bounds, seed=0)
        x = model.simulate(theta, seed=1)
        x_again, t = model.simulate(theta, seed=1, score=True)
        assert x.shape == (50, 4) and t.shape == (50, k)
        assert x.dtype == t.dtype == torch.float64 and not t.requires_grad
        assert torch.equal(x, x_again) and not torch.equal(x, model.simulate(theta, seed=2))
        assert torch.isfinite(model.log_prob(x, theta)).all()
    x, t = ToyModel(dtype=torch.float32).simulate(torch.zeros(3, 2), seed=0, score=True)
    assert x.dtype == t.dtype == torch.float32
    x, t = ToyModel().simulate(torch.zeros(0, 2), seed=0, score=True)
    assert x.shape == (0, 4) and t.shape == (0, 2)


def test_simulate_at_one_theta_is_sample():
    """All rows at θ0: the same draws as sample(n, θ0) for one seed, and for independent seeds a
    two-sample KS test per observable at alpha = 1e-3 (critical distance 1.95·sqrt(2/n) = 0.028
    for n = 10000)."""
    n, theta0 = 10_000, torch.tensor([0.7, -0.9], dtype=torch.float64)
    model = ToyModel()
    rows = theta0.expand(n, 2)
    torch.testing.assert_close(model.simulate(rows, seed=3), model.sample(n, theta0, seed=3), rtol=1e-12, atol=1e-12)
    a, b = model.simulate(rows, seed=4).numpy(), model.sample(n, theta0, seed=5).numpy()
    for i in range(4):
        assert stats.ks_2samp(a[:, i], b[:, i]).pvalue > 1e-3, f"x{i}"


def _x2_cdf(x2: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """CDF of p2 at per-row c: p2 is linear in (1, cx, cy), so is its unnormalised CDF."""
    grid = np.linspace(-math.pi, math.pi, 200_001)
    poly = 1 + 4 * grid**2 / math.pi**2 - 5 * grid**4 / math.pi**4
    parts = [integrate.cumulative_trapezoid(poly * f, grid, initial=0.0) for f in (1, np.sin(grid), np.cos(grid))]
    a, s, c = (np.interp(x2, grid, p) for p in parts)
    return (a + 0.4 * cx * s + 0.5 * cy * c) / (parts[0][-1] + 0.4 * cx * parts[1][-1] + 0.5 * cy * parts[2][-1])


def _pit(x: np.ndarray, theta: np.ndarray, x3_shift: float | None) -> np.ndarray:
    """Each conditional's CDF at its own event and its own θ row: iid U(0, 1) columns."""
    cx, cy = theta[:, 0], theta[:, 1]
    x0p, x1p, x2, x3 = (x[:, 0] - 100) / 700, (x[:, 1] - 100) / 700, x[:, 2], x[:, 3]
    k = 2 * (2 - np.abs(cx))
    u0 = -np.expm1(-k * x0p) / -np.expm1(-k)
    u1 = stats.truncnorm.cdf(x1p, -x0p / SIGMA1, (1 - x0p) / SIGMA1, loc=x0p, scale=SIGMA1)
    shift = 0.6 * (np.sqrt(4 + np.abs(cx)) + np.abs(cy)) * (x1p + x2 / math.pi)
    if x3_shift is not None:
        shift = shift - x3_shift * theta[:, 2]
    u3 = _tabulated_cdf(_q3_shape, -8.0, 8.0)(x3 + shift)
    return np.stack([u0, u1, _x2_cdf(x2, cx, cy), u3], 1)


@pytest.mark.parametrize("x3_shift", [None, 0.5], ids=["cx-cy", "nu"])
def test_simulate_matches_density_at_every_theta(x3_shift):
    """θ spread over the whole box, one event each: the per-row PITs are U(0, 1) by a KS test
    at alpha = 1e-3 (critical distance 1.95/sqrt(n) = 0.014 for n = 20000; the tabulated CDFs
    are accurate to ~1e-9) and mutually uncorrelated within 4.5/sqrt(n). Evaluated at the
    wrong θ rows (shuffled), the PITs of x2 and x3 fail."""
    n = 20_000
    model = ToyModel(x3_shift=x3_shift)
    theta = designs.uniform(n, model.theta_bounds, seed=11)
    x = model.simulate(theta, seed=12).numpy()
    u = _pit(x, theta.numpy(), x3_shift)
    for i in range(4):
        assert stats.kstest(u[:, i], "uniform").pvalue > 1e-3, f"x{i}"
    assert np.abs(np.corrcoef(u.T)[np.triu_indices(4, 1)]).max() < 4.5 / math.sqrt(n)
    wrong = _pit(x, theta.numpy()[np.random.default_rng(0).permutation(n)], x3_shift)
    for i in (2, 3):
        assert stats.kstest(wrong[:, i], "uniform").pvalue < 1e-6, f"x{i}"


# ---------------------------------------------------------------- the exact score
@pytest.mark.parametrize("x3_shift", [None, 0.5], ids=["cx-cy", "nu"])
def test_score_matches_central_differences(x3_shift):
    """Central differences of log_prob per θ row, h = 1e-5: truncation error h²|f'''|/6 ~ 1e-9
    and rounding eps·|log p|/h ~ 1e-10, far below the tolerance 1e-6. Rows with cx = 0 or
    cy = 0 sit on the |c| kink, where the central difference is the mean of the one-sided
    derivatives: the stated convention."""
    model = ToyModel(x3_shift=x3_shift)
    theta = designs.uniform(300, model.theta_bounds, seed=21)
    theta[:20, 0] = 0.0
    theta[10:30, 1] = 0.0
    x, t = model.simulate(theta, seed=22, score=True)
    h = 1e-5
    for j in range(theta.shape[1]):
        step = torch.zeros_like(theta)
        step[:, j] = h
        fd = (model.log_prob(x, theta + step) - model.log_prob(x, theta - step)) / (2 * h)  # N
        torch.testing.assert_close(t[:, j], fd, rtol=1e-6, atol=1e-6)
    # the kink is real: at cx = 0 the right-sided slope differs from the convention's score
    step = torch.zeros_like(theta[:20])
    step[:, 0] = h
    right = (model.log_prob(x[:20], theta[:20] + step) - model.log_prob(x[:20], theta[:20])) / h
    assert (right - t[:20, 0]).abs().max() > 0.1


def test_score_broadcasts_and_reads_one_row_per_event():
    model = ToyModel()
    theta = designs.uniform(40, model.theta_bounds, seed=1)
    x, t = model.simulate(theta, seed=2, score=True)
    torch.testing.assert_close(model.score(x, theta), t, rtol=0, atol=0)
    theta0 = torch.tensor([0.3, -0.6], dtype=torch.float64)
    torch.testing.assert_close(model.score(x, theta0), model.score(x, theta0.expand(40, 2)), rtol=0, atol=0)
    assert model.score(x, torch.zeros(3, 1, 2)).shape == (3, 40, 2)
    with torch.no_grad():  # scores need no caller-side autograd
        torch.testing.assert_close(model.score(x, theta), t)


@pytest.mark.parametrize(
    ("x3_shift", "theta0"),
    [(None, (0.0, 0.0)), (None, (0.8, -1.3)), (0.5, (0.3, -0.4, 1.5))],
    ids=["kink", "off-grid", "nu"],
)
def test_score_has_zero_mean(x3_shift, theta0):
    """E[t] = 0 at the θ the events were drawn at: |mean| < 4.5 standard errors std/sqrt(n),
    n = 20000; also at the kink (cx = cy = 0), where each one-sided score has mean 0. Scores
    of the same events at a θ 0.3 away have a mean many standard errors from 0."""
    n = 20_000
    model = ToyModel(x3_shift=x3_shift)
    rows = torch.tensor(theta0, dtype=torch.float64).expand(n, len(theta0))
    x, t = model.simulate(rows, seed=31, score=True)
    standard_error = t.std(0) / math.sqrt(n)
    assert (t.mean(0).abs() < 4.5 * standard_error).all(), (t.mean(0) / standard_error).tolist()
    shifted = model.score(x, rows + 0.3)
    assert (shifted.mean(0).abs() / (shifted.std(0) / math.sqrt(n))).max() > 20


def test_simulate_and_score_bad_inputs():
    model = ToyModel()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        model.simulate([0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\).*cx"):
        model.simulate(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"NaN/inf.*cy"):
        model.simulate([[0.0, math.nan]])
    with pytest.raises(ValueError, match="density"):
        model.simulate([[0.0, 0.0], [0.0, 2.5]], score=True)
    x = model.simulate(torch.zeros(3, 2), seed=0)
    x[1, 0] = 90.0  # outside x0's range: zero density, no score
    with pytest.raises(ValueError, match=r"1 event.*zero density"):
        model.score(x, [0.0, 0.0])
    with pytest.raises(ValueError, match="do not broadcast"):
        model.score(x, torch.zeros(2, 2))


# ---------------------------------------------------------------- end to end
TINY = NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2, C=1, D=1, s_f=0.1, s_mu=0.1, s_sigma=0.1)
QUICK = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=2)


def test_fit_on_an_off_grid_design(caplog):
    """θ from a uniform design, one simulated event each: training runs on finite losses, and
    the projection is fitted on all events (there is no grid point to take as reference)."""
    toy = ToyModel()
    theta = designs.uniform(1500, toy.theta_bounds, seed=0)
    x, t = toy.simulate(theta, seed=1, score=True)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=TINY)
    with caplog.at_level(logging.INFO, logger="gmmpyro.training"):
        history = model.fit(x, theta, config=QUICK, progress=False)
    assert "not on a grid" in caplog.text
    assert history.n_epochs == 2
    assert np.isfinite(history.train_loss).all() and np.isfinite(history.val_loss).all()
    expected = LatentProjection.fit(x, toy.observables).state_dict()
    fitted = model.projection.state_dict()
    assert fitted.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(fitted[key].cpu(), value, rtol=0, atol=0)

    # the simulator's score feeds the joint-score training term
    scored = DensityModel(toy.observables, toy.params, config=TINY)
    one_epoch = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=1)
    history = train(scored, x, theta, config=one_epoch, progress=False, score=t, score_weight=0.1)
    assert np.isfinite(history.train_loss).all() and np.isfinite(history.score_loss).all()
