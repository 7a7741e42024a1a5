"""Validation metrics on cases with known answers.

Tolerances are statistical: an estimate with Monte-Carlo standard error ``σ`` must lie within
``4σ`` of its known value (a 6e-5 two-sided chance of failing for a new seed; the seeds are
fixed, so the tests are deterministic), unless stated otherwise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from gmmpyro.exceptions import ConvergenceWarning, GmmpyroWarning
from gmmpyro.inference.profile import FitConfig, scan
from gmmpyro.observables import Observable
from gmmpyro.toy import ToyModel
from gmmpyro.validation import (
    EMPTY,
    MODEL_ONLY,
    REFERENCE_ONLY,
    ClassifierConfig,
    binned_pulls,
    c2st,
    compare_marginals,
    compare_pairs,
    contour_agreement,
    kl_gap,
    region_iou,
    reweighted_dependence,
    simulated_dependence,
)

FAST = ClassifierConfig(epochs=10)


@pytest.fixture(scope="module")
def toy():
    return ToyModel()


class Shifted:
    """The toy evaluated at ``θ + δ``: a conditional density whose MLE is the toy's minus ``δ``."""

    def __init__(self, toy, delta, fail=False):
        self.toy, self.delta, self.fail = toy, torch.as_tensor(delta, dtype=torch.float64), fail
        self.observables, self.params = toy.observables, toy.params
        self.theta_bounds, self.device, self.dtype = toy.theta_bounds, toy.device, toy.dtype

    def log_prob(self, x, theta):
        return self.toy.log_prob(x, torch.as_tensor(theta) + self.delta)

    def sample(self, n, theta, seed=None):
        return self.toy.sample(n, torch.as_tensor(theta) + self.delta, seed=seed)

    def prepare(self, x):
        prepared, outer = self.toy.prepare(x), self

        class _Prepared:
            n_events = prepared.n_events

            def log_prob(self, theta):
                if outer.fail:
                    raise RuntimeError("boom")
                return prepared.log_prob(theta + outer.delta)

        return _Prepared()


# ----------------------------------------------------------------------------- KL gap


def _p2(x, cx, cy):
    """The toy's ``p(x2 | c)`` up to normalisation (SPEC §6)."""
    return (1 + 4 * x**2 / math.pi**2 - 5 * x**4 / math.pi**4) * (1 + 0.4 * cx * math.sin(x) + 0.5 * cy * math.cos(x))


def test_kl_gap_of_the_truth_with_itself_is_zero(toy):
    x = toy.sample(500, [0.3, -0.2], seed=0)
    result = kl_gap(toy, toy, x, torch.tensor([0.3, -0.2]))
    assert result.value == 0.0 and result.stderr == 0.0 and result.n_infinite == 0
    assert result.per_point.tolist() == [0.0] and result.per_point_n.tolist() == [500]


def test_kl_gap_matches_the_analytic_kl(toy):
    """Flipping the sign of cy changes only the x2 factor (p3 depends on |cy|): KL is a 1-D integral."""
    c, c_flip = (0.4, 0.6), (0.4, -0.6)
    z, _ = integrate.quad(_p2, -math.pi, math.pi, args=c)
    z_flip, _ = integrate.quad(_p2, -math.pi, math.pi, args=c_flip)
    exact, _ = integrate.quad(
        lambda t: _p2(t, *c) / z * math.log((_p2(t, *c) / z) / (_p2(t, *c_flip) / z_flip)), -math.pi, math.pi
    )
    x = toy.sample(20_000, list(c), seed=3)
    flipped = Shifted(toy, [0.0, 0.0])
    flipped.log_prob = lambda x, theta: toy.log_prob(x, theta * torch.tensor([1.0, -1.0], dtype=torch.float64))
    result = kl_gap(flipped, toy, x, torch.tensor(c))
    assert exact > 0.01  # a real difference, well above the estimate's error
    assert abs(result.value - exact) < 4 * result.stderr


def _q3(t: float) -> float:
    """The toy's x3 plateau (SPEC §6), unnormalised: (α3, β3, γ3) = (10, 1, 1)."""
    return 1 / (1 + math.exp(10 * (t - 1) - 1)) / (1 + math.exp(-10 * (t + 1) - 1))


def test_kl_gap_of_a_shifted_density_matches_the_analytic_kl():
    """Moving x3 by δ (the toy's nu): KL = ∫ q3(t) ln[q3(t)/q3(t - δ)] dt, a 1-D integral."""
    delta = 0.3
    toy = ToyModel(x3_shift=delta)
    z, _ = integrate.quad(_q3, -4, 4)
    exact, _ = integrate.quad(lambda t: _q3(t) / z * math.log(_q3(t) / _q3(t - delta)), -4, 4, limit=200)
    theta = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
    x = toy.sample(20_000, theta, seed=5)
    moved = lambda x, th: toy.log_prob(x, th + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # noqa: E731
    result = kl_gap(moved, toy, x, theta)
    assert exact > 0.05 and abs(result.value - exact) < 4 * result.stderr


def test_kl_gap_per_point_and_infinite(toy):
    x, theta = toy.grid_dataset(200, grid=[[0.0, 0.0], [1.0, 1.0]], seed=1)
    result = kl_gap(Shifted(toy, [0.1, 0.0]), toy, x, theta)
    assert result.points.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert np.isclose(np.average(result.per_point, weights=result.per_point_n), result.value)
    assert "cx=1, cy=1" in repr(result)
    cut = lambda x, theta: torch.where(x[:, 0] < 700, toy.log_prob(x, theta), -torch.inf)  # noqa: E731
    result = kl_gap(cut, toy, x, theta)
    assert result.value == math.inf and result.n_infinite == int((x[:, 0] >= 700).sum())


def test_kl_gap_rejects_events_the_reference_cannot_produce(toy):
    x = torch.tensor([[50.0, 300.0, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="reference density is zero"):
        kl_gap(toy, toy, x, torch.zeros(2))
    with pytest.raises(ValueError, match="theta must have shape"):
        kl_gap(toy, toy, toy.sample(4, [0.0, 0.0], seed=0), torch.zeros(3, 2))


# ----------------------------------------------------------------------------- classifier test


def test_c2st_identical_samples_is_exactly_chance(toy):
    x = toy.sample(1000, [0.0, 0.0], seed=0)
    result = c2st(x, x.clone(), classifier=FAST)
    # the same event of both classes lands in the same fold and gets the same score
    assert result.auc == 0.5 and result.accuracy == 0.5


def test_c2st_same_distribution_is_chance_within_its_error(toy):
    a, b = toy.sample(2000, [0.5, 0.0], seed=1), toy.sample(2000, [0.5, 0.0], seed=2)
    state = torch.get_rng_state()
    result = c2st(a, b, classifier=FAST, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is neither used nor reseeded
    assert abs(result.auc - 0.5) < 3 * result.auc_null_stderr
    assert abs(result.accuracy - 0.5) < 3 * result.accuracy_null_stderr  # binomial error ½/√(2n)
    assert result.p_value > 0.001
    again = c2st(a, b, classifier=FAST, seed=3)
    assert again.auc == result.auc  # seeded


def test_c2st_detects_a_shifted_sample(toy):
    a, b = toy.sample(2000, [0.0, 0.0], seed=1), toy.sample(2000, [0.0, 0.8], seed=2)
    result = c2st(a, b, classifier=FAST, names=["x0", "x1", "x2", "x3"])
    assert result.z > 5 and result.accuracy > 0.5 + 3 * result.accuracy_null_stderr
    assert result.features == ("x0", "x1", "x2", "x3") and "AUC" in repr(result)
    json.dumps(result.to_dict())


def test_c2st_with_parameters_and_bad_input(toy):
    x, theta = toy.grid_dataset(300, grid=[[0.0, 0.0], [1.0, 0.0]], seed=4)
    y, _ = toy.grid_dataset(300, grid=[[0.0, 0.0], [1.0, 0.0]], seed=5)
    result = c2st(x, y, theta_a=theta, theta_b=theta, classifier=FAST, n_folds=3)
    assert result.features[-2:] == ("θ0", "θ1") and result.n_folds == 3
    with pytest.raises(ValueError, match="same number of columns"):
        c2st(x, y[:, :3])
    with pytest.raises(ValueError, match="both theta_a and theta_b"):
        c2st(x, y, theta_a=theta)


# ----------------------------------------------------------------------------- binned pulls


def test_identical_samples_have_zero_pulls(toy):
    x = toy.sample(3000, [0.0, 0.0], seed=0)
    result = compare_marginals(x, x, observables=toy.observables)
    for m in result.marginals:
        finite = np.isfinite(m.pull)
        assert finite.any() and np.all(m.pull[finite] == 0) and m.chi2 == 0 and m.max_ratio_deviation == 0
    pairs = compare_pairs(x, x, observables=toy.observables, bins=10)
    assert pairs.summary()["max_abs_pull"] == 0 and pairs.summary()["model_only_cells"] == 0


def test_independent_samples_of_one_density_have_standard_normal_pulls(toy):
    a, b = toy.sample(20_000, [0.5, 0.5], seed=1), toy.sample(15_000, [0.5, 0.5], seed=2)
    marginals = compare_marginals(a, b, observables=toy.observables)
    for m in marginals.marginals:
        # χ² with ndf degrees of freedom: mean ndf, standard deviation √(2 ndf)
        assert abs(m.chi2 - m.ndf) < 4 * math.sqrt(2 * m.ndf), m.name
    pairs = compare_pairs(a, b, observables=toy.observables)
    for p in pairs.pairs:
        # cells of one histogram are nearly independent (different pairs share events, so they are
        # tested one at a time); select on the total count, which says nothing about the split
        pulls = p.pull[(p.n_model + p.n_reference) >= 20]
        assert pulls.size > 200
        assert abs(pulls.mean()) < 4 / math.sqrt(pulls.size), p.names
        assert abs(pulls.std() - 1) < 4 / math.sqrt(2 * pulls.size), p.names  # s.e. of a normal std
        assert stats.kstest(pulls, "norm").pvalue > 1e-3, p.names


def test_weighted_sample_pulls_use_its_own_weights():
    """A wide normal reweighted to N(0, 1) against direct N(0, 1) draws: still χ² ≈ ndf."""
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 1.3, size=(40_000, 1))
    weights = stats.norm.pdf(wide[:, 0]) / stats.norm.pdf(wide[:, 0], scale=1.3)
    direct = rng.normal(size=(20_000, 1))
    result = compare_marginals(wide, direct, weights_model=weights, bins=30, ranges=[(-3, 3)])
    m = result["x0"]
    assert abs(m.chi2 - m.ndf) < 4 * math.sqrt(2 * m.ndf)
    doubled = compare_marginals(wide, direct, weights_model=2 * weights, bins=30, ranges=[(-3, 3)])
    np.testing.assert_allclose(doubled["x0"].pull, m.pull)  # only relative weights matter


def test_a_shifted_sample_is_detected(toy):
    a, b = toy.sample(20_000, [0.0, 0.0], seed=1), toy.sample(20_000, [0.5, 0.0], seed=2)
    result = compare_marginals(a, b, observables=toy.observables)
    assert result["x0"].p_value < 1e-6 and result["x2"].p_value < 1e-6
    assert result.summary()["min_p_value"] < 1e-6
    pairs = compare_pairs(a, b, observables=toy.observables)
    assert pairs.summary()["fraction_abs_pull_above_3"] > 0.01


def test_cell_status_marks_empty_and_one_sided_cells():
    model = np.array([[0.1, 0.1], [0.1, 0.1], [0.9, 0.9]])
    reference = np.array([[0.1, 0.1], [0.1, 0.9], [0.1, 0.9]])
    p = compare_pairs(model, reference, bins=2, ranges=[(0, 1), (0, 1)]).pairs[0]
    assert p.status.tolist() == [[0, REFERENCE_ONLY], [EMPTY, MODEL_ONLY]]
    assert np.isnan(p.pull[1, 0]) and p.pull[1, 1] > 0 > p.pull[0, 1]


def test_binned_pulls_are_the_two_sample_statistic():
    """Unweighted: (n_a N_b - n_b N_a) / √(N_a N_b (n_a + n_b)), Numerical Recipes §14.3."""
    n_a, n_b, N_a, N_b = np.array([30.0, 70.0]), np.array([50.0, 100.0]), 100.0, 150.0
    expected = (n_a * N_b - n_b * N_a) / np.sqrt(N_a * N_b * (n_a + n_b))
    np.testing.assert_allclose(binned_pulls(n_a, n_a, N_a, N_a, n_b, n_b, N_b, N_b), expected)


def test_discrete_observables_get_one_bin_per_value():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.integers(0, 5, 1000), rng.normal(size=1000)])
    b = np.column_stack([rng.integers(0, 5, 1000), rng.normal(size=1000)])
    observables = [Observable("n_jets", (0, 4), discrete=True), Observable("y")]
    result = compare_marginals(a, b, observables=observables, bins=30)
    assert result["n_jets"].edges.tolist() == [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5] and len(result["y"].model) == 30


def test_marginal_input_errors():
    with pytest.raises(ValueError, match="same columns"):
        compare_marginals(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        compare_marginals(np.full((3, 1), np.nan), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="weights_model"):
        compare_marginals(np.zeros((3, 1)), np.zeros((3, 1)), weights_model=[1.0, -1.0, 1.0])
    with pytest.raises(KeyError, match="no marginal"):
        compare_marginals(np.zeros((3, 1)), np.zeros((3, 1)))["y"]


# ----------------------------------------------------------------------------- reweighting


def _x0_bin_probabilities(edges: np.ndarray, cx: float) -> np.ndarray:
    """Exact probability of each x0 bin: a rate-k exponential on [0, 1] in x0' = (x0 - 100)/700."""
    k, t = 2 * (2 - abs(cx)), (edges - 100) / 700
    return -np.diff(np.exp(-k * t)) / (1 - math.exp(-k))


def test_reweighting_reproduces_the_exact_ratio(toy):
    thetas = np.array([[0.0, 0.0], [1.0, 0.0], [-0.5, 0.7]])
    result = reweighted_dependence(toy, [0.0, 0.0], thetas, n=40_000, bins=10, seed=1)
    assert np.allclose(result.ratio[0], 1.0) and np.allclose(result.error[0], 0.0)  # weights ≡ 1
    edges = result.edges[0]
    for g, (cx, _) in enumerate(thetas[1:], start=1):
        exact = _x0_bin_probabilities(edges, cx) / _x0_bin_probabilities(edges, 0.0)
        z = (result.ratio[g, 0] - exact) / result.error[g, 0]
        assert np.all(np.abs(z) < 4), z  # each bin within 4 of its own errors
    assert result.ess[0] == pytest.approx(40_000) and result.ess[1] < 40_000
    json.dumps(result.to_dict())


def test_simulated_dependence_agrees_with_the_exact_ratio(toy):
    x, theta = toy.grid_dataset(20_000, grid=[[0.0, 0.0], [1.0, 0.0]], seed=2)
    edges = np.stack([np.linspace(100, 800, 11)] * 2 + [np.linspace(-math.pi, math.pi, 11), np.linspace(-4, 2, 11)])
    result = simulated_dependence(x, theta, [0.0, 0.0], [[1.0, 0.0], [0.5, 0.5]], edges=edges)
    exact = _x0_bin_probabilities(edges[0], 1.0) / _x0_bin_probabilities(edges[0], 0.0)
    assert np.all(np.abs((result.ratio[0, 0] - exact) / result.error[0, 0]) < 4)
    assert np.isnan(result.ratio[1]).all() and result.ess.tolist() == [20_000, 0]
    with pytest.raises(ValueError, match="no simulated events at theta_ref"):
        simulated_dependence(x, theta, [0.5, 0.5], [[1.0, 0.0]], edges=edges)


# ----------------------------------------------------------------------------- contour agreement


def test_region_iou_of_two_discs_matches_the_lens_formula():
    g = np.linspace(-2.5, 2.5, 81)
    X, Y = np.meshgrid(g, g, indexing="ij")
    r, d = 1.0, 0.6
    lens = 2 * r**2 * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r**2 - d**2)
    exact = lens / (2 * math.pi * r**2 - lens)
    iou = region_iou(X**2 + Y**2, (X - d) ** 2 + Y**2, g, g, r**2, refine=8)
    # bilinear interpolation of q = r² on a 0.0625 grid misplaces the boundary by < 0.001
    assert iou == pytest.approx(exact, abs=0.01)
    assert math.isnan(region_iou(X**2, X**2, g, g, -1.0))


def test_contour_agreement_with_itself_and_with_a_shifted_truth(toy):
    grid = {"cx": (-1.5, 1.5, 31), "cy": (-1.5, 1.5, 31)}
    truths = [[0.8, 0.5], [-0.6, -0.8]]  # off the |cx| = 0 and |cy| = 0 kinks of the toy
    same = contour_agreement(toy, toy, truths, grid=grid, seed=1)
    assert same.iou_68.tolist() == [1.0, 1.0] and same.iou_95.tolist() == [1.0, 1.0]
    assert same.mle_distance.tolist() == [0.0, 0.0] and same.failed == ("", "")
    # the contours are those of the reference's own profile scan of the same pseudo-dataset
    x = toy.sample(400, torch.tensor(truths[1], dtype=toy.dtype), seed=2)
    own = scan(toy, x, grid, bounds={n: (-1.5, 1.5) for n in grid}, config=FitConfig(n_starts=4, seed=1))
    for a, b in zip(same.contours(1, "reference", 0.95), own.contour(0.95), strict=True):
        np.testing.assert_array_equal(a, b)
    shifted = contour_agreement(Shifted(toy, [0.1, 0.0]), toy, truths, grid=grid, seed=1)
    # the model's MLE is the truth's minus δ: the distance is |δ| up to the fits' tolerance
    np.testing.assert_allclose(shifted.mle_model, shifted.mle_reference - [0.1, 0.0], atol=2e-3)
    np.testing.assert_allclose(shifted.mle_distance, 0.1, atol=2e-3)
    assert np.all((shifted.iou_68 > 0.2) & (shifted.iou_68 < 0.95))
    assert shifted.mean_iou_95 > shifted.mean_iou_68  # a shift costs the larger region less
    assert shifted.contours(0, "model", 0.68) and shifted.contours(0, "reference", 0.95)
    text = json.dumps(shifted.to_dict())
    assert "mean_iou_68" in text and "IoU 68 %" in repr(shifted)


def test_contour_agreement_on_a_window_around_each_truth(toy):
    grid = {"cx": (-1.5, 1.5, 25), "cy": (-1.5, 1.5, 25)}
    truths = [[0.8, 0.5], [-1.3, -0.8]]
    result = contour_agreement(Shifted(toy, [0.05, 0.0]), toy, truths, grid=grid, window=0.4, seed=1)
    assert result.grid_x.shape == (2, 25) and not result.clipped.any()
    np.testing.assert_allclose(result.grid_x[0][[0, -1]], [0.4, 1.2])
    np.testing.assert_allclose(result.grid_x[1][[0, -1]], [-1.5, -0.9])  # clipped to the grid's range
    np.testing.assert_allclose(result.mle_distance, 0.05, atol=2e-3)
    assert np.all(result.iou_68 > 0.5) and np.all(result.iou_68 < 1)
    with pytest.warns(GmmpyroWarning, match="reaches the edge of the grid"):
        small = contour_agreement(toy, toy, truths[:1], grid=grid, window=0.05)
    assert small.clipped.tolist() == [True] and small.summary()["n_clipped"] == 1
    with pytest.raises(ValueError, match="window must be positive"):
        contour_agreement(toy, toy, truths, grid=grid, window=[0.1, -1.0])


def test_contour_agreement_fixes_a_nuisance_at_each_truth():
    toy = ToyModel(x3_shift=0.3)  # (cx, cy, nu)
    grid = {"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}
    truths = [[0.8, 0.5, 0.7], [-0.6, -0.8, -1.2]]
    same = contour_agreement(toy, toy, truths, grid=grid, window=0.4, fix=["nu"], seed=1)
    assert same.fixed == ("nu",) and same.profiled == ()
    assert same.iou_68.tolist() == [1.0, 1.0] and same.mle_distance.tolist() == [0.0, 0.0]
    # each scan is the reference's own scan of its pseudo-dataset with nu at that dataset's true value
    x = toy.sample(400, torch.tensor(truths[1], dtype=toy.dtype), seed=2)
    axes = {"cx": same.grid_x[1], "cy": same.grid_y[1]}
    own = scan(toy, x, axes, fixed={"nu": -1.2}, bounds={n: (-1.5, 1.5) for n in grid}, config=FitConfig(seed=1))
    np.testing.assert_allclose(same.q_reference[1], own.q, atol=1e-9)
    with pytest.raises(ValueError, match="both profiled and fixed"):
        contour_agreement(toy, toy, truths, grid=grid, profile=["nu"], fix=["nu"])


def test_contour_agreement_records_a_failed_scan(toy):
    grid = {"cx": (-1.5, 1.5, 11), "cy": (-1.5, 1.5, 11)}
    with pytest.warns(ConvergenceWarning, match="model scan failed: boom"):
        result = contour_agreement(Shifted(toy, [0.0, 0.0], fail=True), toy, [[0.0, 0.0]], grid=grid)
    assert "boom" in result.failed[0] and math.isnan(result.iou_68[0]) and math.isnan(result.mean_iou_68)
    assert result.contours(0, "model") == [] and "failed: model scan" in repr(result)
    with pytest.raises(ValueError, match="unknown parameter"):
        contour_agreement(toy, toy, [[0.0, 0.0]], grid={"cx": (-1, 1, 5), "cz": (-1, 1, 5)})
