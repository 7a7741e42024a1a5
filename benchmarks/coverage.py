"""Coverage of Wilks intervals and contours from gmmpyro.profile, by pseudo-experiments.

Every case is one :func:`gmmpyro.campaigns.coverage` campaign on a Dask cluster of
``--workers`` processes: toy ``i`` draws its events (and global observable) with seed
``seed + i``, and an interval or contour covers the truth when ``q`` at the truth, the other
parameters profiled, lies below the Wilks threshold — exactly what a fine scan's interval or
contour answers, without the scan.

1. Gaussian events, ``mu`` and ``sigma`` unknown, ``sigma`` profiled: the 68 % and 95 %
   intervals on ``mu``. The exact coverage is known, ``P(|t_{N-1}| < √((N-1)(e^{Δq/N} - 1)))``,
   and tends to the nominal value as ``N`` grows (Wilks).
2. The toy of SPEC §6 with its exact density, 400 events: does the 2-D contour
   ``q(cx, cy) < Δq`` (2.30 / 5.99) contain the truth? (The campaign's joint test.) Near
   ``cx = 0`` or ``cy = 0`` the density depends on ``|c|`` and the regularity conditions of
   Wilks' theorem fail.
3. The same with the nuisance ``nu`` (``x3_shift = 0.3``, unit Gaussian constraint) profiled;
   each toy draws the constraint's global observable around the true ``nu = 0``.

Every line gives the observed coverage ± its binomial standard error.

Usage::

    pip install "gmmpyro[distributed]"
    OMP_NUM_THREADS=1 python benchmarks/coverage.py [--n-exp 500] [--seed 0] [--workers N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

# run as a script, this file's folder heads sys.path, and benchmarks/profile.py would shadow the
# standard library's `profile` module, which torch imports (via cProfile) on the first double backward
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from scipy import stats  # noqa: E402

from gmmpyro.campaigns import coverage  # noqa: E402
from gmmpyro.exceptions import GmmpyroWarning  # noqa: E402
from gmmpyro.inference.profile import FitConfig, delta_q  # noqa: E402
from gmmpyro.observables import Observable  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

CLS = (0.68, 0.95)


class GaussModel:
    """Events ``x ~ Normal(mu, sigma)`` (the closed-form case of ``tests/test_profile.py``)."""

    observables = (Observable("x"),)
    params = ("mu", "sigma")
    dtype, device = torch.float64, torch.device("cpu")
    theta_bounds = torch.tensor([[-5.0, 5.0], [0.05, 5.0]], dtype=torch.float64)

    def log_prob(self, x, theta):
        mu, sigma = theta[..., 0], theta[..., 1]
        value = -0.5 * ((x[..., 0] - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        return torch.where(sigma > 0, value, -torch.inf)

    def sample(self, n, theta, seed=None):
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        theta = torch.as_tensor(theta, dtype=self.dtype)
        return theta[..., :1] + theta[..., 1:] * torch.randn((n, 1), generator=gen, dtype=self.dtype)

    def prepare(self, x):
        model = self

        class Prepared:
            n_events = x.shape[0]

            def log_prob(self, theta):
                return model.log_prob(x, theta.unsqueeze(-2))

        return Prepared()


def fmt(p: float, se: float) -> str:
    return f"{100 * p:.1f} ± {100 * se:.1f}"


def gaussian(n_events: int, n_exp: int, seed: int, client: Client) -> list[str]:
    # one start (at the truth) suffices: the Gaussian likelihood has a single minimum
    result = coverage(
        GaussModel(), [0.0, 1.0], n_exp, n_events, profile=["sigma"], cl=CLS, client=client, seed=seed,
        config=FitConfig(n_starts=1), progress=False,
    )  # fmt: skip
    exact = [
        2 * stats.t.cdf(math.sqrt((n_events - 1) * math.expm1(delta_q(cl, 1) / n_events)), n_events - 1) - 1
        for cl in CLS
    ]
    return [
        f"| Gaussian, N = {n_events}, sigma profiled | mu interval | {result.n_done} | "
        + " | ".join(
            f"{fmt(result.coverage[0, j], result.error[0, j])} (exact {100 * exact[j]:.1f})" for j in range(len(CLS))
        )
        + " |"
    ]


def toy_contour(truth: list[float], n_exp: int, seed: int, nuisance: bool, client: Client) -> str:
    model = ToyModel(x3_shift=0.3) if nuisance else ToyModel()
    constraints = {"nu": torch.distributions.Normal(0.0, 1.0)} if nuisance else None
    theta = [*truth, 0.0] if nuisance else truth
    result = coverage(
        model, theta, n_exp, 400, profile=["nu"] if nuisance else (), constraints=constraints, cl=CLS,
        client=client, seed=seed, progress=False,
    )  # fmt: skip
    label = "toy, nu profiled" if nuisance else "toy"
    return (
        f"| {label}, c = ({truth[0]:g}, {truth[1]:g}), 400 events | (cx, cy) contour | {result.n_done} | "
        + " | ".join(fmt(p, se) for p, se in zip(result.joint_coverage, result.joint_error, strict=True))
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exp", type=int, default=500, help="pseudo-experiments per line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dask worker processes")
    args = parser.parse_args()
    warnings.simplefilter("ignore", GmmpyroWarning)  # out-of-range MLEs of extreme pseudo-data are expected
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    t0 = time.perf_counter()
    rows = [
        "| case | quantity | experiments | 68 % coverage [%] | 95 % coverage [%] |",
        "|---|---|---:|---|---|",
    ]
    for n_events in (10, 50, 200):
        rows += gaussian(n_events, args.n_exp, args.seed, client)
    for truth in ([0.8, -0.8], [0.0, 0.0], [0.8, 0.0]):
        rows.append(toy_contour(truth, args.n_exp, args.seed, False, client))
    rows.append(toy_contour([0.8, -0.8], args.n_exp, args.seed, True, client))
    print("\n".join(rows))
    print(f"\nnominal: 68.3 / 95.0 %; {time.perf_counter() - t0:.0f} s on {args.workers} worker(s)")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
