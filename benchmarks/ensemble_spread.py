"""Is an ensemble's spread honest? Its members' disagreement against the model's actual error on the toy.

For a trained ``DensityModel(ensemble=K)`` of the toy (cx, cy), three levels:

* **events**: at 32 held-out θ (a scrambled Sobol' set over the box, seed 123), 2 000 fresh
  events each, the error of the members' mean ``e = mean_m log p_m(x|θ) - log p_true(x|θ)``
  against the members' spread ``s = sd_m log p_m``. If the truth behaved like one more member,
  ``e / (s √(1 + 1/K))`` would follow Student's t with ``K - 1`` degrees of freedom: *coverage*
  is the fraction of events with ``|e|`` inside its central 68 % interval (0.68 if honest,
  lower if the members are overconfident); *ρ* is the rank correlation of ``|e|`` and ``s``
  over the events (does the spread point to the events the model gets wrong?);
* **θ**: the same per point, with the mean ``|e|`` and mean ``s`` of its events (32 values);
* **MLE** (``--datasets`` > 0): pseudo-datasets of 400 events at ``c ∈ {-0.8, 0, 0.8}²``;
  each member's MLE (:func:`gmmpyro.profile.fit`), the ensemble's and the exact density's.
  The error ``ensemble - exact`` against the members' sd, as above (per parameter and dataset),
  and the members' sd in units of the statistical error (the exact fit's Hessian error): how
  large the model uncertainty is next to the data's.

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/ensemble_spread.py --model benchmarks/out/MODEL.gmm [--datasets 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import numpy as np
import torch
from scipy import stats

import gmmpyro
from gmmpyro import designs
from gmmpyro.toy import ToyModel

TRUTHS = [[cx, cy] for cx in (-0.8, 0.0, 0.8) for cy in (-0.8, 0.0, 0.8)]


def _coverage_and_rank(errors: np.ndarray, spreads: np.ndarray, K: int) -> tuple[float, float]:
    """Fraction of ``|errors|`` inside the t-interval of ``spreads``, and their rank correlation."""
    t68 = stats.t.ppf(0.84, K - 1) * np.sqrt(1 + 1 / K)
    errors, spreads = np.abs(errors).ravel(), spreads.ravel()
    return float(np.mean(errors <= t68 * spreads)), float(stats.spearmanr(errors, spreads)[0])


def spread_check(model, toy: ToyModel, n_points: int = 32, n_events: int = 2_000) -> dict:
    """The event- and θ-level columns: ``coverage``, ``rho_events``, ``rho_theta`` (see the module text)."""
    points = designs.sobol(n_points, toy.theta_bounds, seed=123)
    errors, spreads = [], []
    for j, theta in enumerate(points):
        x = toy.sample(n_events, theta, seed=20_000 + j)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a Sobol' point may lie a hair outside the drawn θ range
            members = model.member_log_prob(x.to(model.dtype), theta.to(model.dtype)).double()  # K N
        errors.append((members.mean(0) - toy.log_prob(x, theta)).numpy())
        spreads.append(members.std(0).numpy())
    errors, spreads = np.array(errors), np.array(spreads)  # points × events
    coverage, rho_events = _coverage_and_rank(errors, spreads, model.ensemble)
    rho_theta = float(stats.spearmanr(np.abs(errors).mean(1), spreads.mean(1))[0])
    return {"coverage": coverage, "rho_events": rho_events, "rho_theta": rho_theta}


def mle_check(model, toy: ToyModel, datasets: int) -> dict:
    """The MLE-level columns: coverage and rank correlation of the ensemble's MLE error, members' sd / σ_stat."""
    errors, spreads, sigmas = [], [], []
    for i, truth in enumerate(t for t in TRUTHS for _ in range(datasets)):
        x = toy.sample(400, truth, seed=30_000 + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes of single fits, MLEs at the range's edge
            exact = gmmpyro.profile.fit(toy, x)
            ensemble = gmmpyro.profile.fit(model, x.to(model.dtype))
            members = [gmmpyro.profile.fit(model.member(m), x.to(model.dtype)) for m in range(model.ensemble)]
        for name in toy.params:
            errors.append(ensemble.values[name] - exact.values[name])
            spreads.append(np.std([fit.values[name] for fit in members], ddof=1))
            sigmas.append(exact.errors[name])
    errors, spreads, sigmas = np.array(errors), np.array(spreads), np.array(sigmas)
    coverage, rho = _coverage_and_rank(errors, spreads, model.ensemble)
    return {
        "mle_coverage": coverage,
        "mle_rho": rho,
        "mle_error": float(np.sqrt(np.mean(errors**2))),
        "mle_spread": float(np.sqrt(np.mean(spreads**2))),
        "spread_over_sigma": float(np.median(spreads / sigmas)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved DensityModel(ensemble=K) of the toy")
    parser.add_argument("--datasets", type=int, default=2, help="pseudo-datasets per true point for the MLE level")
    args = parser.parse_args()
    model, toy = gmmpyro.DensityModel.load(args.model), ToyModel()
    if model.ensemble < 2:
        parser.error(f"{args.model} holds one model, not an ensemble")
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | {torch.get_num_threads()} torch threads | "
          f"torch {torch.__version__}; {args.model}: K = {model.ensemble}")  # fmt: skip
    r = spread_check(model, toy)
    if args.datasets:
        r |= mle_check(model, toy, args.datasets)
    for name, value in r.items():
        print(f"{name:>18}: {value:.3f}")


if __name__ == "__main__":
    main()
