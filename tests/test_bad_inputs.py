"""Bad input gets a clear error or warning naming the problem: one row per case, so none turns silent again.

Training failures and checkpoints have their own table (``test_training_failures.py``), the
command line its own (``test_cli_errors.py``), model files theirs (``test_modelfile.py``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from helpers import trained_toy_model

from gmmpyro import (
    ConvergenceWarning,
    DensityModel,
    NetworkConfig,
    OutOfRangeWarning,
    TrainingConfig,
    bayes,
    profile,
)
from gmmpyro.inference import Likelihood
from gmmpyro.toy import ToyModel

THETA = torch.tensor([0.4, -0.6], dtype=torch.float64)


@pytest.fixture(scope="module")
def model():
    return trained_toy_model()


@pytest.fixture(scope="module")
def events():
    return ToyModel().sample(50, THETA, seed=4)


def _above_pi(x: torch.Tensor, by: float) -> torch.Tensor:
    bad = x.clone()
    bad[0, 2] = math.pi + by
    return bad


# (id, call(model, events), exception type, message fragment)
ERRORS = [
    ("scan: [lo, hi, n] as a list", lambda m, x: profile.scan(m, x, {"cx": [-1.0, 1.0, 5]}), ValueError, "ambiguous"),
    ("scan: float n", lambda m, x: profile.scan(m, x, {"cx": (-1.0, 1.0, 5.0)}), ValueError, "must be an integer"),
    ("scan: bool n", lambda m, x: profile.scan(m, x, {"cx": (-1.0, 1.0, True)}), ValueError, "must be an integer"),
    ("scan: two-entry tuple", lambda m, x: profile.scan(m, x, {"cx": (-1.0, 1.0)}), ValueError, "(lo, hi, n)"),
    ("scan: lo > hi", lambda m, x: profile.scan(m, x, {"cx": (1.0, -1.0, 5)}), ValueError, "lo < hi"),
    ("scan: NaN value", lambda m, x: profile.scan(m, x, {"cx": [0.0, math.nan]}), ValueError, "finite"),
    ("scan: profile as a string", lambda m, x: profile.scan(m, x, {"cx": (0, 1, 3)}, profile="cy"), TypeError,
     "write ['cy']"),
    ("log_prob: shapes that do not broadcast", lambda m, x: m.log_prob(x[:20], THETA.expand(3, 2)), ValueError,
     "theta[..., None, :]"),
    ("log_prob: theta of the wrong length", lambda m, x: m.log_prob(x, torch.zeros(3)), ValueError,
     "theta must have shape (..., 2)"),
    ("log_prob: NaN theta", lambda m, x: m.log_prob(x, torch.tensor([math.nan, 0.0])), ValueError, "NaN"),
    ("log_prob: complex events", lambda m, x: m.log_prob(x.to(torch.complex128), THETA), TypeError, "complex128"),
    ("log_prob: boolean events", lambda m, x: m.log_prob(x > 0, THETA), TypeError, "dtype bool"),
    ("log_prob: events as strings", lambda m, x: m.log_prob([["a"] * 4], THETA), TypeError, "real numbers"),
    ("prepare: complex events", lambda m, x: m.prepare(x.to(torch.complex64)), TypeError, "complex64"),
    ("fit: boolean events", lambda m, x: profile.fit(m, x > 0), TypeError, "dtype bool"),
    ("fit: NaN event", lambda m, x: profile.fit(m, x.where(x != x[0, 0], math.nan)), ValueError, "NaN/inf"),
    ("fit: event 1e-7 beyond π", lambda m, x: profile.fit(m, _above_pi(x, 1e-7)), ValueError,
     "1e-07 above the upper bound"),
    ("train: complex events", lambda m, x: DensityModel(m.observables, m.params).fit(
        x.to(torch.complex128), THETA.expand(len(x), 2)), TypeError, "complex128"),
    ("train: boolean weights", lambda m, x: DensityModel(m.observables, m.params).fit(
        x, THETA.expand(len(x), 2), weights=x[:, 0] > 0), TypeError, "weights must hold real numbers"),
    ("sample: far outside the training range", lambda m, x: m.sample(5, [1e6, 0.0]), ValueError,
     "far outside the training range"),
    ("sample: negative n", lambda m, x: m.sample(-1, THETA), ValueError, "non-negative"),
    ("DensityModel: params as a string", lambda m, x: DensityModel(m.observables, "cx"), TypeError, "write ['cx']"),
    ("TrainingConfig: float batch size", lambda m, x: TrainingConfig(batch_size=2.5), ValueError, "batch_size"),
    ("NetworkConfig: float n_gauss", lambda m, x: NetworkConfig(n_gauss=1.5), ValueError, "n_gauss"),
    ("NetworkConfig: NaN s_sigma", lambda m, x: NetworkConfig(s_sigma=math.nan), ValueError,
     "s_sigma must be a finite number"),
    ("sample_posterior: NaN fixed value", lambda m, x: bayes.sample_posterior(
        m, x, {"cx": dist.Uniform(-1.0, 1.0), "cy": math.nan}, num_samples=2, warmup_steps=1, progress=False),
     ValueError, "must be finite"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "fragment"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_input_raises_a_clear_error(model, events, call, error, fragment):
    with warnings.catch_warnings(), pytest.raises(error) as info:
        warnings.simplefilter("ignore", OutOfRangeWarning)  # far outside the range warns, then fails
        call(model, events)
    assert fragment in str(info.value)


def test_fixed_parameter_outside_the_training_range_warns_in_sample_posterior(model, events):
    priors = {"cx": dist.Uniform(-1.0, 1.0), "cy": 2.5}
    with warnings.catch_warnings(), pytest.warns(OutOfRangeWarning, match=r"fixed parameters outside .* cy \(1 point"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # chains of five draws
        bayes.sample_posterior(
            model, events, priors, num_samples=5, warmup_steps=5, num_chains=1, progress=False, seed=0
        )


@pytest.mark.parametrize(
    "cx", [30.0, 60.0, 1e3], ids=lambda v: f"cx={v:g}"
)  # training range ±1.5: the network's widths reach ~1e150 here
def test_far_extrapolation_never_gives_an_infinite_likelihood(model, events, cx):
    with pytest.warns(OutOfRangeWarning):
        log_p = model.log_prob(events, torch.tensor([cx, 0.0], dtype=torch.float64))
    assert not log_p.isnan().any() and not log_p.isposinf().any()
    with pytest.warns(OutOfRangeWarning):
        result = profile.scan(model, events, {"cx": (cx - 1.0, cx, 3)})
    assert np.all(result.valid <= np.isfinite(result.q))  # no valid point with q = NaN or -inf
    assert not np.isneginf(result.twice_nll).any()


def _steps_above_pi(dtype: torch.dtype, steps: int) -> torch.Tensor:
    """The ``steps``-th value of ``dtype`` above π (float32(π) itself is the first: it lies 8.7e-8 above)."""
    value = torch.tensor(math.pi, dtype=dtype)
    if float(value) <= math.pi:
        value = torch.nextafter(value, torch.tensor(4.0, dtype=dtype))
    for _ in range(steps - 1):
        value = torch.nextafter(value, torch.tensor(4.0, dtype=dtype))
    return value


@pytest.mark.parametrize("source", [torch.float32, torch.float64])
@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float64])
def test_a_value_one_rounding_step_beyond_a_bound_lies_on_it(events, source, model_dtype):
    """One rounding step of the coarser of the data's and the model's precision above π counts as π."""
    model = trained_toy_model(model_dtype)
    theta = THETA.to(model_dtype)
    one_step = events.to(source)
    one_step[0, 2] = _steps_above_pi(source, 1)
    at_pi = one_step.to(model_dtype)
    at_pi[0, 2] = math.pi
    torch.testing.assert_close(model.log_prob(one_step, theta), model.log_prob(at_pi, theta))
    assert float(Likelihood(model, one_step).x_obs[0, 2]) == float(torch.tensor(math.pi, dtype=model_dtype))
    if source == torch.float64 and model_dtype == torch.float32:
        return  # two float64 steps above π still round to float32(π): on the bound
    two_steps = one_step.clone()
    two_steps[0, 2] = _steps_above_pi(source, 2)
    with pytest.raises(ValueError, match="above the upper bound"):
        Likelihood(model, two_steps)
    assert torch.isneginf(model.log_prob(two_steps, theta)[0])


@pytest.mark.parametrize("content", [b"", b"not a zip archive"], ids=["empty", "garbage"])
def test_a_corrupt_event_file_names_the_file(tmp_path, content):
    from gmmpyro.datafiles import read_columns

    path = tmp_path / "events.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"events\.npz: cannot read events"):
        read_columns(path)
