"""Coverage campaigns as Dask tasks: exact coverage, determinism, resume, lost workers, bad inputs.

One 2-worker LocalCluster of processes serves the module; the exact toy density keeps every
campaign small (100 events, 8 toys). Seeds are fixed, so every number below is
reproducible; the statistical tolerances say what they allow for.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
from scipy import stats

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from helpers import trained_toy_model  # noqa: E402
from test_profile import GaussModel  # noqa: E402

from gmmpyro.campaigns import CoverageResult, coverage  # noqa: E402
from gmmpyro.campaigns._toys import ToySpec, fluctuated_constraints  # noqa: E402
from gmmpyro.inference.fit_config import FitConfig  # noqa: E402
from gmmpyro.inference.wilks import delta_q  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

TRUTH = [0.8, -0.8]
N_TOYS, N_EVENTS = 8, 100
FAST = FitConfig(n_starts=1)  # one start (at the truth): both likelihoods here have a single minimum near it


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def fresh(client):
    """The reference campaign: 8 toys of the exact toy, both parameters tested, in one go on 2 workers."""
    return coverage(ToyModel(), TRUTH, N_TOYS, N_EVENTS, client=client, config=FAST, progress=False)


def _toy_campaign(**kwargs):
    return coverage(ToyModel(), TRUTH, N_TOYS, N_EVENTS, config=FAST, progress=False, **kwargs)


def test_gaussian_coverage_is_the_exact_one(client):
    # mu of N = 10 Gaussian events with sigma profiled: q(mu_true) = N ln(1 + t²/(N - 1)), t Student's
    # with N - 1 dof, so the exact coverage is P(|t| < √((N - 1)(e^{Δq/N} - 1))), below nominal at N = 10
    n, n_toys = 10, 200
    result = coverage(
        GaussModel(), [0.0, 1.0], n_toys, n, profile=["sigma"], client=client, config=FAST, progress=False, seed=7
    )
    assert result.params == ("mu",) and result.n_done == n_toys and result.n_failed == result.n_unconverged == 0
    # every toy's q is the closed form of its own events (fits converge to 1e-6 in -ln L)
    for toy, seed, q in zip(result.toys["toy"], result.toys["seed"], result.toys["q_mu"], strict=True):
        assert seed == 7 + toy
        x = GaussModel().sample(n, [0.0, 1.0], seed=int(seed))[:, 0].double()
        s2 = x.var(unbiased=False).item()
        assert q == pytest.approx(n * math.log1p(x.mean().item() ** 2 / s2), abs=1e-5)
    for j, cl in enumerate((0.68, 0.95)):
        exact = 2 * stats.t.cdf(math.sqrt((n - 1) * math.expm1(delta_q(cl, 1) / n)), n - 1) - 1
        se = math.sqrt(exact * (1 - exact) / n_toys)
        # binomial noise of 200 toys: within 3 standard errors of the exact value (a 0.3 % chance to fail
        # for a correct implementation; with seed 7 the outcome is fixed)
        assert abs(result.coverage[0, j] - exact) < 3 * se
        assert result.error[0, j] == pytest.approx(
            math.sqrt(result.coverage[0, j] * (1 - result.coverage[0, j]) / n_toys)
        )
    np.testing.assert_array_equal(result.joint_coverage, result.coverage[0])  # one tested parameter


def test_result_object(fresh):
    assert isinstance(fresh, CoverageResult)
    assert fresh.params == ("cx", "cy") and fresh.cl == (0.68, 0.95)
    assert fresh.coverage.shape == fresh.error.shape == (2, 2) and fresh.joint_coverage.shape == (2,)
    assert fresh.n_toys == fresh.n_done + fresh.n_failed == N_TOYS
    np.testing.assert_array_equal(fresh.toys["toy"], np.arange(N_TOYS))
    assert set(fresh.toys["status"]) <= {"ok", "unconverged", "failed"}
    q = fresh.toys["q_cx"]
    np.testing.assert_array_equal(fresh.toys["covered_cx_95"], q < delta_q(0.95, 1))
    np.testing.assert_array_equal(fresh.toys["covered_joint_68"], fresh.toys["q_joint"] < delta_q(0.68, 2))
    assert not fresh.coverage.flags.writeable
    text = repr(fresh)
    assert text.startswith("CoverageResult (8 toys of 100 events") and "(cx, cy)" in text and "nominal" in text
    d = fresh.to_dict()
    assert d["n_toys"] == N_TOYS and len(d["toys"]["q_cy"]) == N_TOYS and "summary" in d
    assert "<table>" in fresh._repr_html_()


def test_one_worker_gives_the_same_toys(fresh, monkeypatch):
    # client=None starts a LocalCluster of os.cpu_count() processes: one here, with another batching
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    one = coverage(ToyModel(), TRUTH, 4, N_EVENTS, config=FAST, progress=False, batch_size=3)
    for column in ("q_cx", "q_cy", "q_joint", "mle_cx", "twice_nll"):
        np.testing.assert_array_equal(one.toys[column], fresh.toys[column][:4])  # bit for bit


def test_resume_runs_each_toy_once(client, fresh, tmp_path):
    out = tmp_path / "campaign"
    first = coverage(ToyModel(), TRUTH, 4, N_EVENTS, client=client, config=FAST, progress=False, out=out, batch_size=2)
    assert sorted(p.name for p in out.iterdir()) == ["toys-0000000-0000001.parquet", "toys-0000002-0000003.parquet"]
    np.testing.assert_array_equal(first.toys["q_cx"], fresh.toys["q_cx"][:4])
    # an interruption that lost the batch of toys 2-3; then the whole campaign, with more toys
    (out / "toys-0000002-0000003.parquet").unlink()
    resumed = _toy_campaign(client=client, out=out)
    stored = pq.read_table(out).column("toy").to_pylist()
    assert sorted(stored) == list(range(N_TOYS))  # every toy exactly once
    for column in ("q_cx", "q_cy", "q_joint", "mle_cy", "covered_joint_95"):
        np.testing.assert_array_equal(resumed.toys[column], fresh.toys[column])
    np.testing.assert_array_equal(resumed.coverage, fresh.coverage)
    # a finished campaign runs nothing (no client is started); a smaller one reads its first toys
    np.testing.assert_array_equal(_toy_campaign(out=out).toys["q_joint"], fresh.toys["q_joint"])
    half = coverage(ToyModel(), TRUTH, 3, N_EVENTS, config=FAST, progress=False, out=out)
    np.testing.assert_array_equal(half.toys["q_cy"], fresh.toys["q_cy"][:3])
    # other settings are refused, naming the file
    with pytest.raises(ValueError, match=r"toys-0000000-0000001\.parquet.*n_events: stored 100, now 50"):
        coverage(ToyModel(), TRUTH, N_TOYS, 50, config=FAST, progress=False, out=out)
    with pytest.raises(ValueError, match="theta_true"):
        coverage(ToyModel(), [0.5, -0.8], N_TOYS, N_EVENTS, config=FAST, progress=False, out=out)


def test_nuisance_with_constraint_and_trained_model(client):
    toy = ToyModel(x3_shift=0.3)
    result = coverage(
        toy,
        {"cx": 0.8, "cy": -0.8, "nu": 0.5},
        2,
        N_EVENTS,
        profile=["nu"],
        constraints={"nu": torch.distributions.Normal(0.0, 1.0)},
        client=client,
        config=FAST,
        progress=False,
    )
    assert result.params == ("cx", "cy") and result.n_done == 2
    assert set(result.toys) >= {"glob_nu", "mle_nu", "q_joint"} and "q_nu" not in result.toys
    # a trained DensityModel travels to the workers too (it pickles) and makes the toys with its own
    # sampler; this small, rough one needs more than 10 Newton steps to converge, so only the round trip is checked
    model = trained_toy_model()
    small = coverage(model, [0.5, 0.5], 2, 50, client=client, config=FitConfig(n_starts=1, max_iter=10), progress=False)
    assert small.n_done + small.n_failed == 2 and np.all(np.isfinite(small.toys["mle_cx"]))


def test_a_minimum_on_a_cusp_counts(client):
    # at c = (0, 0) the toy's density depends on |cx| and |cy|: toys 2 and 3 have their minimum on the cusp,
    # where the gradient does not vanish, so fit() reports no convergence; their q is still the minimum's
    result = coverage(ToyModel(), [0.0, 0.0], 2, 400, client=client, config=FAST, progress=False, seed=2)
    assert result.n_done == 2 and result.n_unconverged == 2 and result.n_failed == 0
    assert list(result.toys["status"]) == ["unconverged", "unconverged"]
    assert "not converged: the global fit" in result.toys["message"][1]
    assert np.all(np.isfinite(result.toys["q_joint"])) and np.all(result.toys["q_joint"] >= 0)
    assert "2 with a fit short of convergence" in repr(result)


def test_a_killed_worker_loses_no_toy(client, fresh, tmp_path):
    # the last test on the cluster: one worker process is killed (SIGKILL) after the first toy is stored;
    # its nanny is told not to start a new one, so the other worker does the rest without a warm-up
    out = tmp_path / "campaign.parquet"  # one file, rewritten per batch
    (nanny, *_) = client.cluster.workers.values()
    victim = nanny.pid
    killed = {}

    def kill_when_started():
        try:
            deadline = time.monotonic() + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(out, "rb") as f:  # one handle: the campaign may replace the file meanwhile
                killed["stored"] = pq.read_table(f).num_rows
            nanny.close_gracefully()  # "do not restart the worker if it goes away"
            os.kill(victim, signal.SIGKILL)
        except Exception as err:  # reported by the assertion below
            killed["error"] = err

    thread = threading.Thread(target=kill_when_started)
    thread.start()
    result = coverage(
        ToyModel(), TRUTH, N_TOYS, N_EVENTS, client=client, config=FAST, progress=False, out=out, batch_size=1
    )
    thread.join()
    assert "error" not in killed, killed
    assert killed["stored"] < N_TOYS  # killed mid-campaign
    assert victim not in client.run(os.getpid).values()
    assert sorted(pq.read_table(out).column("toy").to_pylist()) == list(range(N_TOYS))  # each toy once
    for column in ("q_cx", "q_cy", "q_joint"):
        np.testing.assert_array_equal(result.toys[column], fresh.toys[column])


def test_global_observables_are_drawn_around_the_truth():
    # the toy's constraint is the given one moved to the drawn global observable a ~ Normal(nu_true, 2)
    spec = ToySpec(
        model=None, simulator=None, params=("cx", "nu"), theta_true=(0.0, 1.5), n_events=1, tested=("cx",),
        constraints=((("nu",), torch.distributions.Normal(0.5, 2.0)),), thresholds={}, cl=(0.68,), seed=0,
        config=FAST, bounds={},
    )  # fmt: skip
    draws = []
    for seed in range(1000):
        globs, dists = fluctuated_constraints(spec, seed)
        draws.append(globs["nu"])
    a = np.array(draws)
    # 1000 draws: the mean within 4 standard errors (4·2/√1000 = 0.25) of 1.5, the sd within 4.5 (0.2)
    assert abs(a.mean() - 1.5) < 0.25 and abs(a.std() - 2.0) < 0.2
    nu = torch.linspace(-3, 3, 7, dtype=torch.float64)
    expected = torch.distributions.Normal(draws[-1], 2.0).log_prob(nu)
    torch.testing.assert_close(dists[("nu",)].log_prob(nu), expected, rtol=1e-6, atol=1e-6, check_dtype=False)
    assert fluctuated_constraints(spec, 3)[0] == fluctuated_constraints(spec, 3)[0]  # seeded


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_toys": 0}, "n_toys must be an integer >= 1"),
        ({"n_events": 2.5}, "n_events must be an integer"),
        ({"profile": ["zz"]}, r"profile: unknown parameter\(s\) \['zz'\]"),
        ({"profile": ["cx", "cy"]}, "every parameter"),
        ({"theta_true": [0.8]}, r"theta_true must hold one value per parameter \('cx', 'cy'\)"),
        ({"theta_true": [0.8, 2.0]}, r"cy = 2 lies outside the model's theta_bounds"),
        ({"theta_true": {"cx": 0.8, "c": 0.1}}, r"unknown parameter\(s\) \['c'\], missing \['cy'\]"),
        ({"cl": (0.68, 1.5)}, r"cl: levels must lie in \(0, 1\)"),
        ({"constraints": {"cy": torch.distributions.Uniform(-1.0, 1.0)}}, "constraint on 'cy'.*got Uniform"),
        ({"constraints": {"nu": torch.distributions.Normal(0.0, 1.0)}}, r"constraints: unknown parameter\(s\)"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"out": "/nonexistent/dir/c.parquet"}, "directory of /nonexistent/dir/c.parquet does not exist"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"theta_true": TRUTH, "n_toys": 3, "n_events": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        coverage(ToyModel(), args.pop("theta_true"), args.pop("n_toys"), args.pop("n_events"), **args)


def test_missing_optional_dependencies(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r'pip install "gmmpyro\[distributed\]"'):
        coverage(ToyModel(), TRUTH, 1, 10, progress=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r'pip install "gmmpyro\[distributed\]"'):
        coverage(ToyModel(), TRUTH, 1, 10, progress=False, out=tmp_path / "c")
