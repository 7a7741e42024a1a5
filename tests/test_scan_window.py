"""Profile scans over an automatic window around the MLE: ``scan(model, x, {"mu": n})``.

The reference is the closed form of Gaussian events with unknown mean and width (see
``test_profile.py``): ``q(μ) = N ln(1 + (μ - x̄)²/s²)`` with ``σ`` profiled, and the 2-D
``q(μ, σ) = 2N ln(σ/s) + N (s² + (μ - x̄)²)/σ² - N``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from test_profile import N_EVENTS, _analytic_q, gauss_events

from gmmpyro.inference import scan as scan_module
from gmmpyro.inference.profile import delta_q, scan


@pytest.fixture(scope="module")
def gauss():
    return gauss_events()


def _closed_form_interval(xbar: float, s: float, cl: float) -> tuple[float, float]:
    half = s * math.sqrt(math.expm1(delta_q(cl, 1) / N_EVENTS))
    return xbar - half, xbar + half


def test_window_is_centred_on_the_mle_and_scaled_by_its_error(gauss):
    model, x, xbar, s = gauss
    result = scan(model, x, {"mu": 31}, profile=["sigma"])
    axis = result.grid["mu"]
    half = 1.25 * math.sqrt(delta_q(0.99, 1)) * result.mle.errors["mu"]
    assert axis.size == 31
    np.testing.assert_allclose([axis[0], axis[-1]], [result.mle.values["mu"] - half, result.mle.values["mu"] + half])
    # 31 points over ±3.2σ resolve the interval: the spline through them is within 1e-4 σ of the closed form
    for cl in (0.68, 0.95):
        np.testing.assert_allclose(result.interval("mu", cl), _closed_form_interval(xbar, s, cl), atol=1e-4 * s)


def test_2d_window_holds_the_95_percent_region(gauss):
    model, x, xbar, s = gauss
    result = scan(model, x, {"mu": 21, "sigma": 21})
    mu, sigma = np.meshgrid(result.grid["mu"], result.grid["sigma"], indexing="ij")
    q = _analytic_q(mu, sigma, xbar, s)
    np.testing.assert_allclose(result.q, q, atol=1e-6)
    edges = np.concatenate([q[0], q[-1], q[:, 0], q[:, -1]])
    assert edges.min() > delta_q(0.95, 2)  # the region closes inside the grid
    assert edges.min() < 4 * delta_q(0.99, 2)  # and the grid is not needlessly wide


def test_a_narrow_start_is_widened_until_the_region_fits(gauss, monkeypatch):
    model, x, xbar, s = gauss
    monkeypatch.setattr(scan_module, "_WINDOW_MARGIN", 0.2)  # a start of ±0.6σ, well inside the 95 % interval
    result = scan(model, x, {"mu": 41}, profile=["sigma"])
    q = result.q
    assert q[0] > delta_q(0.95, 1) and q[-1] > delta_q(0.95, 1)
    start_half = 0.2 * math.sqrt(delta_q(0.99, 1)) * result.mle.errors["mu"]
    assert result.grid["mu"][-1] - result.grid["mu"][0] > 3 * 2 * start_half
    np.testing.assert_allclose(result.interval("mu", 0.95), _closed_form_interval(xbar, s, 0.95), atol=1e-3 * s)


def test_window_stops_at_the_bounds(gauss):
    model, x, xbar, _ = gauss
    lower = xbar - 0.02  # the MLE sits 0.02 above the bound, well inside one standard error (0.08)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bound cuts the region, which is no reason to warn or widen
        result = scan(model, x, {"mu": 21}, profile=["sigma"], bounds={"mu": (lower, None)})
    assert result.grid["mu"][0] == pytest.approx(lower)
    assert result.grid["mu"][-1] > result.mle.values["mu"]


def test_window_never_leaves_the_model_range(gauss):
    model = gauss[0]
    far = model.sample(N_EVENTS, [4.9, 1.2], seed=2)  # MLE near the model's upper bound 5
    result = scan(model, far, {"mu": 15}, profile=["sigma"])
    assert result.grid["mu"][-1] <= 5.0


@pytest.mark.parametrize("spec", [1, 0, -3])
def test_too_few_points_are_rejected(gauss, spec):
    model, x, *_ = gauss
    with pytest.raises(ValueError, match="automatic window needs n >= 2"):
        scan(model, x, {"mu": spec})


def test_automatic_and_fixed_axes_mix(gauss):
    model, x, *_ = gauss
    result = scan(model, x, {"mu": 11, "sigma": (0.9, 1.5, 7)})
    assert result.q.shape == (11, 7)
    np.testing.assert_allclose(result.grid["sigma"], np.linspace(0.9, 1.5, 7))
