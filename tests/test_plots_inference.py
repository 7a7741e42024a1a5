"""Figures of profile scans and the profile-vs-posterior comparison, headless."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import arviz as az
import matplotlib.pyplot as plt
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde
from test_profile import GaussModel

from gmmpyro.inference.posterior_data import to_arviz
from gmmpyro.inference.profile import scan
from gmmpyro.inference.wilks import delta_q
from gmmpyro.plotting import compare, plot_profile
from gmmpyro.plotting._axes import POSTERIOR, PROFILE
from gmmpyro.plotting.inference import hdr_levels
from gmmpyro.toy import ToyModel

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


def _bars(ax, colour):
    """The horizontal segments (``hlines``) of ``colour`` in ``ax``, each ``(x0, x1, y)``."""
    out = []
    for c in ax.collections:
        if isinstance(c, LineCollection) and np.allclose(c.get_colors()[0], to_rgba(colour)):
            out += [(seg[0, 0], seg[1, 0], seg[0, 1]) for seg in c.get_segments() if np.isclose(seg[0, 1], seg[1, 1])]
    return np.array(out)


def test_compare_draws_the_arviz_hdi(scans, idata):
    """The posterior's bars in the 1-D panels are ArviZ's highest-density intervals of the draws."""
    fig = compare(scans[0], idata, cl=(0.68, 0.95))
    (ax,) = fig.axes
    bars = _bars(ax, POSTERIOR)
    draws = np.asarray(idata.posterior["mu"].values, dtype=float).ravel()
    np.testing.assert_allclose(bars[:, :2], [az.hdi(draws, cl) for cl in (0.68, 0.95)], rtol=1e-12)
    lo, hi = bars[0, :2]
    assert np.mean((draws >= lo) & (draws <= hi)) == pytest.approx(0.68, abs=1e-3)
    # just below the profile's bars, which lie on q = Δq
    np.testing.assert_allclose(bars[:, 2], [delta_q(c, 1) - 0.035 * 1.5 * delta_q(0.95, 1) for c in (0.68, 0.95)])


def _one_d_q_lines(ax):
    """The profile's scan points and the grey lines ``q = Δq`` of a 1-D panel."""
    (points,) = [
        line
        for line in ax.lines
        if line.get_marker() == "o"
        and line.get_linestyle() == "None"
        and np.allclose(to_rgba(line.get_color()), to_rgba(PROFILE))
        and len(line.get_xdata()) > 1
    ]
    levels = sorted(
        float(line.get_ydata()[0])
        for line in ax.lines
        if len(line.get_ydata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1] and line.get_color() == "0.55"
    )
    return points, levels


def test_compare_shows_q_with_the_wilks_thresholds(scans, idata):
    two = scans[1]
    fig = compare(two, idata, cl=(0.68, 0.9))
    ax2d, *one_d = fig.axes
    assert ax2d.get_xlabel() == "mu" and ax2d.get_ylabel() == "sigma"
    for ax, name in zip(one_d, two.params, strict=True):
        points, levels = _one_d_q_lines(ax)
        x, q = two.curve(name)
        np.testing.assert_array_equal(points.get_xdata(), x)
        np.testing.assert_array_equal(points.get_ydata(), q)  # y is q = -2 Δln L itself
        assert q.min() == pytest.approx(0.0, abs=0.05)  # the grid's point nearest to the MLE
        assert levels == pytest.approx([delta_q(0.68, 1), delta_q(0.9, 1)])  # follows cl
        assert ax.get_ylim() == pytest.approx((0.0, 1.5 * delta_q(0.9, 1)))
        # the profile intervals are bars on those lines
        bars = _bars(ax, PROFILE)
        np.testing.assert_allclose(bars[:, :2], [two.interval(name, c) for c in (0.68, 0.9)], rtol=1e-12)
        np.testing.assert_allclose(bars[:, 2], levels)
    assert one_d[0].get_ylabel() and one_d[1].get_shared_y_axes().joined(one_d[0], one_d[1])
    assert one_d[0].get_ylim() == one_d[1].get_ylim()


def test_compare_legend_truth_and_markers(scans, idata):
    fig = compare(scans[1], idata, truth={"mu": 0.3, "sigma": 1.2})
    (legend,) = fig.legends  # one legend, below the panels
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [
        "profile 68 %",
        "profile 95 %",
        "posterior HDR 68 %",
        "posterior HDR 95 %",
        "MLE",
        "posterior median",
        "truth",
    ]
    handles = dict(zip(labels, legend.legend_handles, strict=True))
    shapes = {handles[k].get_marker() for k in ("MLE", "posterior median", "truth")}
    assert len(shapes) == 3  # three distinct markers
    assert handles["profile 68 %"].get_linestyle() != handles["profile 95 %"].get_linestyle()
    ax2d, ax_mu, ax_sigma = fig.axes
    (star,) = [line for line in ax2d.lines if line.get_marker() == "*"]
    np.testing.assert_array_equal(star.get_xydata(), [[0.3, 1.2]])
    for ax, value in ((ax_mu, 0.3), (ax_sigma, 1.2)):
        (vline,) = [line for line in ax.lines if line.get_linestyle() == ":" and line.get_color() == "black"]
        np.testing.assert_array_equal(vline.get_xdata(), [value, value])
    mle = scans[1].mle.values
    (dot,) = [line for line in ax2d.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(dot.get_xydata(), [[mle["mu"], mle["sigma"]]])
    draws = np.stack([np.asarray(idata.posterior[n].values).ravel() for n in ("mu", "sigma")], -1)
    (diamond,) = [line for line in ax2d.lines if line.get_marker() == "D"]
    np.testing.assert_allclose(diamond.get_xydata(), [np.median(draws, 0)])


def test_compare_uses_given_axes(scans, idata):
    before = plt.get_fignums()
    fig, axes = plt.subplots(1, 3)
    assert compare(scans[1], idata, axes=axes, truth={"mu": 0.3}) is fig
    assert plt.get_fignums() == [*before, fig.number]  # no new figure
    assert all(ax.lines for ax in axes)
    assert axes[0].get_legend() is not None and not fig.legends  # no constrained layout: legend inside
    fig, ax = plt.subplots(layout="constrained")
    assert compare(scans[0], idata, axes=ax) is fig and fig.axes == [ax] and fig.legends


def test_compare_rejects_a_bad_truth(scans, idata):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['mux'\]"):
        compare(scans[1], idata, truth={"mux": 0.3})
    with pytest.raises(ValueError, match=r"truth must be a dict .* got list"):
        compare(scans[1], idata, truth=[0.3, 1.2])
    with pytest.raises(ValueError, match=r"truth\['sigma'\] must be a number, got 'a'"):
        compare(scans[1], idata, truth={"mu": 0.3, "sigma": "a"})
    with pytest.raises(ValueError, match=r"truth\['mu'\] must be finite"):
        plot_profile(scans[0], truth={"mu": math.nan})


def test_compare_of_a_scan_with_a_profiled_third_parameter():
    model = ToyModel(x3_shift=0.3)
    x = model.sample(400, [0.8, -0.8, 0.0], seed=4)
    unit = {"nu": torch.distributions.Normal(0.0, 1.0)}
    two = scan(model, x, {"cx": (0.4, 1.2, 11), "cy": (-1.2, -0.4, 11)}, profile=["nu"], constraints=unit)
    draws = np.random.default_rng(1).multivariate_normal(two.mle.theta, two.mle.covariance, size=(2, 500))
    idata = to_arviz({"posterior": {n: draws[..., i] for i, n in enumerate(model.params)}})
    fig = compare(two, idata, truth={"cx": 0.8, "cy": -0.8, "nu": 0.0})  # the profiled one is ignored
    assert len(fig.axes) == 3 and [ax.get_xlabel() for ax in fig.axes] == ["cx", "cx", "cy"]
    assert "truth" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_plot_profile_marks_the_truth(scans):
    one, two = scans
    fig = plot_profile(one, truth={"mu": 0.3})
    (ax,) = fig.axes
    assert "truth" in [t.get_text() for t in ax.get_legend().get_texts()]
    fig = plot_profile(two, truth={"mu": 0.3, "sigma": 1.2})
    (star,) = [line for line in fig.axes[0].lines if line.get_marker() == "*"]
    np.testing.assert_array_equal(star.get_xydata(), [[0.3, 1.2]])


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
