"""Figures of profile scans and the profile-vs-posterior comparison, headless."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import arviz as az
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde
from test_profile import GaussModel

from gmmpyro.inference.posterior_data import to_arviz
from gmmpyro.inference.profile import scan
from gmmpyro.plotting import compare, plot_profile
from gmmpyro.plotting.inference import hdr_levels

N = 200


@pytest.fixture(scope="module")
def scans():
    model = GaussModel()
    x = model.sample(N, [0.3, 1.2], seed=1)
    one = scan(model, x, {"mu": (-0.2, 0.8, 41)}, profile=["sigma"])
    two = scan(model, x, {"mu": (-0.2, 0.8, 41), "sigma": (0.95, 1.65, 41)})
    return one, two


@pytest.fixture(scope="module")
def idata(scans):
    """Draws from the Gaussian approximation of the posterior under flat priors."""
    mle = scans[1].mle
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal([mle.values["mu"], mle.values["sigma"]], mle.covariance, size=(2, 1000))
    return to_arviz({"posterior": {"mu": draws[..., 0], "sigma": draws[..., 1]}})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_profile_1d_and_2d(scans):
    one, two = scans
    fig = plot_profile(one)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "mu" and len(ax.lines) >= 5  # curve, 2 levels, 4 interval ends, MLE
    fig, ax = plt.subplots()
    assert two.plot(ax=ax) is fig
    assert ax.get_xlabel() == "mu" and ax.get_ylabel() == "sigma"
    assert len(ax.collections) >= 3  # two filled bands and the lines


def test_compare_2d(scans, idata):
    fig = compare(scans[1], idata)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    fig2, axes = plt.subplots(1, 3)
    assert compare(scans[1], idata, axes=axes) is fig2
    with pytest.raises(ValueError, match="compare needs 3 axes"):
        compare(scans[1], idata, axes=axes[:2])


def test_compare_1d_and_bad_idata(scans, idata):
    fig = compare(scans[0], idata)
    assert len(fig.axes) == 1
    bad = to_arviz({"posterior": {"cx": np.zeros((2, 10))}})
    with pytest.raises(ValueError, match=r"no variable\(s\) \['mu'\]"):
        compare(scans[0], bad)
    with pytest.raises(TypeError, match="posterior"):
        compare(scans[0], {"mu": np.zeros(3)})


def test_compare_draws_the_arviz_hdi(scans, idata):
    """The dashed segments of the 1-D panels are ArviZ's highest-density intervals of the draws."""
    fig = compare(scans[0], idata, cl=(0.68, 0.95))
    (ax,) = fig.axes
    dashed = [c for c in ax.collections if c.get_linestyle()[0][1] is not None]  # hlines(ls="--")
    ends = np.array([seg[:, 0] for c in dashed for seg in c.get_segments()])
    draws = np.asarray(idata.posterior["mu"].values, dtype=float).ravel()
    np.testing.assert_allclose(ends, [az.hdi(draws, cl) for cl in (0.68, 0.95)], rtol=1e-12)
    lo, hi = ends[0]
    assert np.mean((draws >= lo) & (draws <= hi)) == pytest.approx(0.68, abs=1e-3)


def test_hdr_of_a_gaussian():
    """A standard normal's 2-D highest-density region holding ``c`` is a disc of area ``-2π ln(1 - c)``."""
    draws = np.random.default_rng(2).normal(size=(4000, 2))
    kde = gaussian_kde(draws.T)
    g = np.linspace(-4, 4, 161)
    X, Y = np.meshgrid(g, g)
    Z = kde(np.vstack([X.ravel(), Y.ravel()])).reshape(X.shape)
    cell = (g[1] - g[0]) ** 2
    for cl, level in zip((0.68, 0.95), hdr_levels(kde, draws, (0.68, 0.95)), strict=True):
        area = np.count_nonzero(level < Z) * cell
        # KDE smoothing widens the region a little; 4000 draws give a few % noise: allow 12 %
        assert area == pytest.approx(-2 * math.pi * math.log(1 - cl), rel=0.12)


def test_matplotlib_global_state_untouched(scans):
    before = plt.get_fignums()
    fig, ax = plt.subplots()
    plot_profile(scans[0], ax=ax)
    assert plt.get_fignums() == [*before, fig.number]  # drew on the given axes, made no new figure
