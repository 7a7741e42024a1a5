"""Simulation-based calibration as Dask tasks: the exact posterior passes, a shifted one fails, resume, bad inputs.

One 2-worker cluster of processes serves the module. The exact toy density with 10 events and
uniform priors on (cx, cy) is sampled by SMC (the default sampler) with 190 particles and two
moves per tempering step, and each rank counts L = 19 draws: a simulation takes about 0.2 s.
Seeds are fixed, so every p-value below is reproducible; the comments say what the thresholds
allow for.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pyro.distributions as pdist
import pytest
import torch
from test_campaign_agreement import ShiftedToy
from torch.distributions import Normal, Poisson, Uniform

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from gmmpyro.campaigns import SBCResult, sbc  # noqa: E402
from gmmpyro.campaigns import calibration as calibration_module  # noqa: E402
from gmmpyro.campaigns._runner import local_client  # noqa: E402
from gmmpyro.campaigns._simulations import draw_theta  # noqa: E402
from gmmpyro.inference.bayes import NUTSConfig, SMCConfig  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

PRIOR = {"cx": Uniform(-1.5, 1.5), "cy": Uniform(-1.5, 1.5)}
N_SIMULATIONS, N_EVENTS, L = 40, 10, 19
FAST = {"n_draws": L, "config": SMCConfig(n_particles=10 * L, n_mcmc_steps=2), "progress": False}


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


@pytest.fixture(scope="module")
def stored(client, tmp_path_factory):
    """The exact toy's posterior, 40 simulations on 2 workers, stored eight per file."""
    out = tmp_path_factory.mktemp("sbc") / "exact"
    result = sbc(ToyModel(), PRIOR, N_SIMULATIONS, N_EVENTS, client=client, out=out, batch_size=8, **FAST)
    return result, out


def test_the_exact_posterior_is_calibrated(stored):
    result, _ = stored
    assert isinstance(result, SBCResult) and result.params == ("cx", "cy") and result.sampler == "smc"
    assert result.n_done == N_SIMULATIONS and result.n_failed == 0
    assert result.ranks.shape == (N_SIMULATIONS, 2) and result.ranks.dtype == np.int64
    assert result.ranks.min() >= 0 and result.ranks.max() <= L
    # 190 particles keep more than 19 distinct lineages: the kept draws are near-independent
    assert result.n_low_ess == 0 and np.all(result.simulations["ess"] >= L)
    # 40 ranks in 0..19: 4 bins of 5 rank values, 10 expected per bin
    assert result.n_bins == 4
    # each p-value is uniform for a calibrated posterior: a 1 % chance each to fall below 0.01, 4 % for the
    # four; with the fixed seeds the outcome is fixed
    assert np.all(result.p_chi2 > 0.01) and np.all(result.p_ks > 0.01)
    # the truths are the prior draws of their seeds, spread over the prior's range
    table = result.simulations
    for toy in (0, 37):
        truth = draw_theta(PRIOR, int(table["seed_theta"][toy]))
        assert (table["theta_cx"][toy], table["theta_cy"][toy]) == (truth["cx"], truth["cy"])
    assert np.all(np.abs(table["theta_cx"]) <= 1.5) and np.ptp(table["theta_cx"]) > 2.0
    assert "χ² (3 dof)" in repr(result) and "40 ranked (0 with ESS < 19)" in repr(result)
    assert list(result.to_pandas().columns)[:3] == ["toy", "seed_theta", "seed_events"]


def test_rank_histograms(stored):
    import matplotlib.pyplot as plt

    result, _ = stored
    fig = result.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    plt.close(fig)
    fig, axes = plt.subplots(2, 1)
    assert result.plot(ax=axes) is fig
    assert axes[1].get_xlim() == (0.0, L + 1.0)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"SBCResult\.plot needs 2 axes, got 1"):
        result.plot(ax=axes[0])


def test_a_shifted_posterior_fails(client):
    # the posterior of a model read at cx + 0.8 sits 0.8 below the truth's, 1.3 posterior sd (0.6 at 10
    # events): the ranks of cx pile up at the top
    shifted = sbc(ShiftedToy((0.8, 0.0)), PRIOR, 32, N_EVENTS, simulator=ToyModel(), client=client, **FAST)
    assert shifted.n_done == 32
    # a calibrated posterior gives p < 0.001 once in a thousand campaigns (KS), p < 0.01 once in a hundred (χ²)
    assert shifted.p_ks[0] < 1e-3 and shifted.p_chi2[0] < 1e-2
    # the mean of 32 uniform ranks is L/2 ± 0.05 L (standard error): 0.65 L is three of them away
    assert np.mean(shifted.ranks[:, 0]) > 0.65 * L


def test_resume_runs_each_simulation_once(client, stored):
    result, out = stored
    assert len(list(out.iterdir())) == N_SIMULATIONS // 8
    (out / "toys-0000016-0000023.parquet").unlink()  # an interruption lost one batch
    again = sbc(ToyModel(), PRIOR, N_SIMULATIONS, N_EVENTS, client=client, out=out, **FAST)
    assert sorted(pq.read_table(out).column("toy").to_pylist()) == list(range(N_SIMULATIONS))
    np.testing.assert_array_equal(again.ranks, result.ranks)  # other batches, same ranks
    np.testing.assert_array_equal(again.p_ks, result.p_ks)
    # stored: a smaller campaign reads its simulations and starts no cluster
    half = sbc(ToyModel(), PRIOR, N_SIMULATIONS // 2, N_EVENTS, out=out, **FAST)
    np.testing.assert_array_equal(half.ranks, result.ranks[: N_SIMULATIONS // 2])
    with pytest.raises(ValueError, match=r"toys-0000000-0000007\.parquet.*n_draws: stored 19, now 9"):
        sbc(ToyModel(), PRIOR, N_SIMULATIONS, N_EVENTS, out=out, **{**FAST, "n_draws": 9})


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"prior": {"cx": PRIOR["cx"]}}, r"no prior for \['cy'\]"),
        ({"prior": {**PRIOR, "nu": Normal(0.0, 1.0)}}, r"unknown parameter\(s\) \['nu'\]"),
        ({"prior": {**PRIOR, "cy": "uniform"}}, "prior of 'cy' must be a torch distribution or a finite number"),
        ({"prior": {**PRIOR, "cy": Uniform(torch.zeros(2), torch.ones(2))}}, "prior of 'cy' must be univariate"),
        ({"prior": {**PRIOR, "cy": Poisson(1.0)}}, "prior of 'cy' is discrete"),
        ({"prior": {"cx": 0.1, "cy": 0.2}}, "every parameter is fixed"),
        ({"n_draws": 0}, "n_draws must be an integer >= 1"),
        ({"n_simulations": 0}, "n_simulations must be an integer >= 1"),
        ({"n_draws": 50, "config": SMCConfig(n_particles=40)}, r"n_draws = 50 is more than the 1 × 40 draws"),
        ({"sampler": "mh"}, "sampler must be one of"),
        ({"sampler": "batched"}, "num_chains must be an integer >= 2"),
        ({"out": "/nonexistent/dir/s.parquet"}, "directory of /nonexistent/dir/s.parquet does not exist"),
    ],
)
def test_bad_inputs_fail_before_any_work(args, match, monkeypatch):
    def no_campaign(*args, **kwargs):
        raise AssertionError("a campaign started")

    # out's store is opened by the campaign runner: it is the one input checked there
    if "out" not in args:
        monkeypatch.setattr(calibration_module, "run_campaign", no_campaign)
    kwargs = {"prior": PRIOR, "n_simulations": 4, "n_events": 10, "progress": False, **args}
    with pytest.raises(ValueError, match=match):
        sbc(ToyModel(), kwargs.pop("prior"), kwargs.pop("n_simulations"), kwargs.pop("n_events"), **kwargs)


@pytest.mark.parametrize("uniform", [pdist.Uniform, Uniform], ids=["pyro", "torch"])
def test_nuts_takes_pyro_and_torch_priors(uniform, monkeypatch):
    captured = {}
    monkeypatch.setattr(calibration_module, "run_campaign", lambda *a, **k: captured.update(k) or [])
    prior = {"cx": uniform(-1.5, 1.5), "cy": 0.2}
    result = sbc(ToyModel(), prior, 3, 10, sampler="nuts", config=NUTSConfig(), progress=False)
    assert result.params == ("cx",) and dict(result.fixed) == {"cy": 0.2} and result.n_done == 0
    assert captured["settings"]["prior"] == {"cx": repr(prior["cx"]), "cy": 0.2}
    with pytest.raises(TypeError, match="config of sampler 'nuts' must be a NUTSConfig, got SMCConfig"):
        sbc(ToyModel(), prior, 3, 10, sampler="nuts", config=SMCConfig(), progress=False)
