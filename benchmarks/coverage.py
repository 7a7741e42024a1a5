"""Coverage of Wilks intervals and contours from gmmpyro.profile, by pseudo-experiments.

1. Gaussian events, ``mu`` and ``sigma`` unknown, ``sigma`` profiled: the 68 % and 95 %
   intervals on ``mu`` from :func:`gmmpyro.profile.scan` (spline crossings). The exact
   coverage is known, ``P(|t_{N-1}| < √((N-1)(e^{Δq/N} - 1)))``, and tends to the nominal
   value as ``N`` grows (Wilks).
2. The toy of SPEC §6 with its exact density, 400 events: does the 2-D contour
   ``q(cx, cy) < Δq`` (2.30 / 5.99) contain the truth? (``q`` at the truth against the global
   fit, which is what a fine scan's contour answers.) Near ``cx = 0`` or ``cy = 0`` the
   density depends on ``|c|`` and the regularity conditions of Wilks' theorem fail.
3. The same with the nuisance ``nu`` (``x3_shift = 0.3``, unit Gaussian constraint) profiled.

Every line gives the observed coverage ± its binomial standard error.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/coverage.py [--n-exp 500] [--seed 0]
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from gmmpyro.exceptions import GmmpyroWarning  # noqa: E402
from gmmpyro.inference.likelihood import Likelihood  # noqa: E402
from gmmpyro.inference.profile import FitConfig, delta_q, fit, scan  # noqa: E402
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


def fmt(hits: np.ndarray) -> str:
    p = hits.mean()
    return f"{100 * p:.1f} ± {100 * math.sqrt(p * (1 - p) / hits.size):.1f}"


def gaussian(n_events: int, n_exp: int, seed: int) -> list[str]:
    model = GaussModel()
    hits = np.zeros((n_exp, len(CLS)), dtype=bool)
    sd = 1 / math.sqrt(n_events)
    for i in range(n_exp):
        x = model.sample(n_events, [0.0, 1.0], seed=seed + i)
        s = scan(model, x, {"mu": (-6 * sd, 6 * sd, 49)}, profile=["sigma"], config=FitConfig(n_starts=1))
        for j, cl in enumerate(CLS):
            lo, hi = s.interval("mu", cl)
            hits[i, j] = lo < 0.0 < hi
    exact = [
        2 * stats.t.cdf(math.sqrt((n_events - 1) * math.expm1(delta_q(cl, 1) / n_events)), n_events - 1) - 1
        for cl in CLS
    ]
    return [
        f"| Gaussian, N = {n_events}, sigma profiled | mu interval | {n_exp} | "
        + " | ".join(f"{fmt(hits[:, j])} (exact {100 * exact[j]:.1f})" for j in range(len(CLS)))
        + " |"
    ]


def toy_contour(truth: list[float], n_exp: int, seed: int, nuisance: bool) -> str:
    model = ToyModel(x3_shift=0.3) if nuisance else ToyModel()
    constraints = {"nu": torch.distributions.Normal(0.0, 1.0)} if nuisance else None
    theta = [*truth, 0.0] if nuisance else truth
    q_truth = np.empty(n_exp)
    for i in range(n_exp):
        x = model.sample(400, theta, seed=seed + i)
        lik = Likelihood(model, x, constraints=constraints)
        best = fit(lik, config=FitConfig(n_starts=8, seed=i))
        at_truth = fit(lik, fixed={"cx": truth[0], "cy": truth[1]}, config=FitConfig(n_starts=1))
        q_truth[i] = at_truth.twice_nll - best.twice_nll
    hits = [q_truth < delta_q(cl, 2) for cl in CLS]
    label = "toy, nu profiled" if nuisance else "toy"
    return (
        f"| {label}, c = ({truth[0]:g}, {truth[1]:g}), 400 events | (cx, cy) contour | {n_exp} | "
        + " | ".join(fmt(h) for h in hits)
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-exp", type=int, default=500, help="pseudo-experiments per line")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", GmmpyroWarning)  # out-of-range MLEs of extreme pseudo-data are expected
    t0 = time.perf_counter()
    rows = [
        "| case | quantity | experiments | 68 % coverage [%] | 95 % coverage [%] |",
        "|---|---|---:|---|---|",
    ]
    for n_events in (10, 50, 200):
        rows += gaussian(n_events, args.n_exp, args.seed)
    for truth in ([0.8, -0.8], [0.0, 0.0], [0.8, 0.0]):
        rows.append(toy_contour(truth, args.n_exp, args.seed, nuisance=False))
    rows.append(toy_contour([0.8, -0.8], args.n_exp, args.seed, nuisance=True))
    print("\n".join(rows))
    print(f"\nnominal: 68.3 / 95.0 %; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
