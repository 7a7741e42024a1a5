"""Fidelity on one event budget: how θ is learned (design, joint score), for each network design.

Every row trains on the same number of simulated toy events (cx, cy; SPEC §6; ``--events``,
490 000 by default: the paper's 7 × 7 grid at 10 000 per point) with one recipe:

* ``grid7``: the paper's 7 × 7 grid, ``events / 49`` per point;
* ``grid9``: the 9 × 9 grid of the paper's cure for c = 0 (the 7 × 7 values plus ±0.2), ``events / 81`` per point;
* ``uniform``: one θ per event, drawn uniformly (:func:`gmmpyro.designs.uniform`);
* ``sobol``: one θ per event from a scrambled Sobol' sequence (:func:`gmmpyro.designs.sobol`);
* ``adaptive``: half the events uniform, one θ per event; an ensemble (``--ensemble K``, at
  least 2) trained on them picks 64 points with :func:`gmmpyro.designs.suggest_points`; the
  other half is simulated near those points (uniform in a box half as wide as the spacing of
  64 points on a grid) and the model trained again, afresh, on all events (the loop of the
  designs page; the time column adds both trainings);
* a ``+score`` suffix: with the simulator's joint score ``t = ∇θ log p(x|θ)`` (the toy returns
  it with each event), ``fit(score=t, score_weight=--alpha)``;
* ``--ensemble K``: every row trains ``DensityModel(ensemble=K)`` (``--bootstrap``: with
  Poisson bootstrap weights) and adds the spread columns below.

and each network of ``--networks``: the paper-size network of a design (``paper``, ``lowrank``,
``amplitudes``, rank ``--rank``) or the demo's small low-rank one (``demo``). Columns: the KL
gap (``log p_true - log p_model``, mean over ``--eval-events`` fresh events at each of
``toy_kl.py``'s 11 points; its mean and worst point), the journal's Fig. 15 check (at
``c ∈ {-0.8, 0, 0.8}²``, ``--datasets`` pseudo-datasets of 400 events each, scanned with the model
and with the exact density on a 21 × 21 grid of ±0.3 around the truth:
:func:`gmmpyro.validation.contour_agreement`; mean IoU of the 68 % and 95 % regions and the
MLE distance, ± the standard error over datasets) and the training time. Training: batches of
500, Adam at 1e-3, at most ``--epochs`` epochs, stopping after 8 without improvement.

The spread columns of an ensemble (is its model uncertainty honest?): at 32 held-out θ (a
Sobol' set over the box, seed 123), 2 000 fresh events each, the error of the members' mean
``e = mean_m log p_m(x|θ) - log p_true(x|θ)`` against the members' spread ``s = sd_m log p_m``.
If the truth behaved like one more member, ``e / (s √(1 + 1/K))`` would follow Student's t
with ``K - 1`` degrees of freedom: *coverage* is the fraction of events with ``|e|`` inside its
central 68 % interval (0.68 if honest, lower if overconfident); *ρ events* is the rank
correlation of ``|e|`` and ``s`` over events, *ρ θ* that of the 25 points' mean ``|e|`` and
mean ``s`` (does the spread point to where the model is wrong?).

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/fidelity.py [--rows grid7 uniform+score ...]
        [--networks paper amplitudes] [--events 490000] [--seeds 0 1] [--save-dir DIR]
    python -P benchmarks/fidelity.py --networks demo --events 49000 --eval-events 2000   # minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from dataclasses import replace

# benchmarks/profile.py would shadow the standard library's profile module that torch imports:
# keep this folder on the path (for toy_kl), but last
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ensemble_spread import spread_check  # noqa: E402
from toy_kl import kl_gaps  # noqa: E402

import gmmpyro  # noqa: E402
from gmmpyro import designs  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config  # noqa: E402
from gmmpyro.validation import contour_agreement  # noqa: E402

TRUTHS = [[cx, cy] for cx in (-0.8, 0.0, 0.8) for cy in (-0.8, 0.0, 0.8)]
GRID_VALUES = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
DEMO = gmmpyro.NetworkConfig(
    n_gauss=12, A1=32, B1=32, B2=12, C=2, D=2, s_f=0.01, s_mu=0.01, s_sigma=0.01, design="lowrank", rank=8
)
ROWS = ("grid7", "grid9", "uniform", "sobol", "adaptive")
SUGGESTED = 64


def training_theta(design: str, n: int, seed: int) -> torch.Tensor:
    """``θ (n', 2)`` of one θ design, ``n' <= n`` (a grid takes ``n // points`` events per point)."""
    bounds = ToyModel().theta_bounds
    if design.startswith("grid"):
        values = GRID_VALUES if design == "grid7" else tuple(sorted((*GRID_VALUES, -0.2, 0.2)))
        axis = torch.tensor(values, dtype=torch.float64)
        points = torch.cartesian_prod(axis, axis)
        return points.repeat_interleave(n // len(points), dim=0)
    if design in ("uniform", "adaptive"):  # adaptive: the first half, see run_row
        return designs.uniform(n, bounds, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n is not a power of two: the points stay evenly spread
        return designs.sobol(n, bounds, seed=seed)


def network_config(network: str, rank: int) -> gmmpyro.NetworkConfig:
    return DEMO if network == "demo" else replace(paper_config(), design=network, rank=rank)


def run_row(args, network: str, row: str, seed: int) -> dict:
    """Train one (network, recipe, seed) and measure it."""
    design, with_score = row.removesuffix("+score"), row.endswith("+score")
    toy = ToyModel()
    first = args.events // 2 if design == "adaptive" else args.events
    theta = training_theta(design, first, seed)
    x, score = toy.simulate(theta, seed=seed + 1, score=True)
    tic = time.perf_counter()
    model = train(args, network, x, theta, score if with_score else None, seed)
    if design == "adaptive":
        points = designs.suggest_points(model, SUGGESTED, seed=seed)
        theta_near = near(points, args.events - first, toy.theta_bounds, seed)
        x_near, score_near = toy.simulate(theta_near, seed=seed + 2, score=True)
        theta, x, score = torch.cat([theta, theta_near]), torch.cat([x, x_near]), torch.cat([score, score_near])
        model = train(args, network, x, theta, score if with_score else None, seed)
    seconds = time.perf_counter() - tic
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        ensemble = f"_x{args.ensemble}{'b' if args.bootstrap else ''}" if args.ensemble > 1 else ""
        model.save(os.path.join(args.save_dir, f"fidelity_{network}_{row}{ensemble}_seed{seed}.gmm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a corner point lies a hair outside the range of drawn θ
        gaps = [gap for gap, _ in kl_gaps(model.log_prob, toy, args.eval_events, seed=10_000)]
    truths = torch.tensor([t for t in TRUTHS for _ in range(args.datasets)], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # edge and convergence notes of individual scans
        agreement = contour_agreement(
            model, toy, truths, n_events=400, grid={"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}, window=0.3,
            seed=1000 + seed,
        )
    return {
        "kl_mean": float(np.mean(gaps)), "kl_worst": float(np.max(gaps)), "iou68": agreement.iou_68,
        "iou95": agreement.iou_95, "distance": agreement.mle_distance, "seconds": seconds,
        "epochs": model.history.n_epochs, "events": len(theta),
        **(spread_check(model, toy) if model.ensemble > 1 else {}),
    }  # fmt: skip


def train(args, network: str, x, theta, score, seed: int) -> gmmpyro.DensityModel:
    """One model of the run's network and ensemble size, trained on these events (with their scores, if given)."""
    torch.manual_seed(seed)
    model = gmmpyro.DensityModel(
        ToyModel().observables, ToyModel().params, config=network_config(network, args.rank), ensemble=args.ensemble
    )
    config = gmmpyro.TrainingConfig(
        batch_size=500, learning_rate=1e-3, max_epochs=args.epochs, stop_patience=8, seed=seed,
        bootstrap=args.bootstrap,
    )  # fmt: skip
    model.fit(x.float(), theta.float(), score=None if score is None else score.float(),
              score_weight=None if score is None else args.alpha, config=config, progress=False)  # fmt: skip
    return model


def near(points: torch.Tensor, n: int, bounds: torch.Tensor, seed: int) -> torch.Tensor:
    """``n`` θ ``(n, k)``, uniform in boxes around the points, each half as wide as the spacing of a grid of them."""
    m, k = points.shape
    half_width = (bounds[:, 1] - bounds[:, 0]) / m ** (1 / k) / 4
    generator = torch.Generator().manual_seed(seed + 3)
    centres = points[torch.arange(n) % m]
    theta = centres + (2 * torch.rand(n, k, generator=generator, dtype=torch.float64) - 1) * half_width
    return torch.maximum(torch.minimum(theta, bounds[:, 1]), bounds[:, 0])


def mean_se(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    return f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recipes = [*ROWS, *(f"{r}+score" for r in ROWS)]
    parser.add_argument("--rows", nargs="+", choices=recipes, default=recipes, metavar="RECIPE",
                        help=f"recipes, from {recipes}")  # fmt: skip
    parser.add_argument("--networks", nargs="+", choices=("demo", "paper", "lowrank", "amplitudes", "film"),
                        default=["paper", "amplitudes"])  # fmt: skip
    parser.add_argument("--rank", type=int, default=16, help="rank of the paper-size low-rank designs")
    parser.add_argument("--events", type=int, default=490_000, help="simulated events per row")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--alpha", type=float, default=1.0, help="the joint score's weight in the +score rows")
    parser.add_argument("--eval-events", type=int, default=20_000, help="fresh events per KL point")
    parser.add_argument("--datasets", type=int, default=2, help="pseudo-datasets per true point")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--save-dir", help="save each trained model here")
    parser.add_argument("--ensemble", type=int, default=1, help="members K of every row's model")
    parser.add_argument("--bootstrap", action="store_true", help="ensembles with bootstrap weights")
    args = parser.parse_args()
    if any(r.startswith("adaptive") for r in args.rows) and args.ensemble < 2:
        parser.error("the adaptive rows need an ensemble to suggest points: --ensemble K with K >= 2")
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | {torch.get_num_threads()} torch threads | "
          f"torch {torch.__version__}; {args.events} events per row, ≤ {args.epochs} epochs, score weight "
          f"{args.alpha}; KL over {args.eval_events} events per point; {9 * args.datasets} datasets of 400 "
          f"events; ensemble K = {args.ensemble}{' with bootstrap weights' if args.bootstrap else ''}")  # fmt: skip
    spread = args.ensemble > 1
    print("| network | recipe | seed | events | epochs | training (s) | KL mean | KL worst | IoU 68 % | IoU 95 % "
          "| MLE distance |" + (" coverage | ρ events | ρ θ |" if spread else ""))  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|" + ("---:|---:|---:|" if spread else ""))
    for seed in args.seeds:
        for network in args.networks:
            for row in args.rows:
                r = run_row(args, network, row, seed)
                cells = [network, row, seed, r["events"], r["epochs"], f"{r['seconds']:.0f}"]
                cells += [f"{r['kl_mean']:.4f}", f"{r['kl_worst']:.4f}"]
                cells += [mean_se(r[name]) for name in ("iou68", "iou95", "distance")]
                if spread:
                    cells += [f"{r[name]:.3f}" for name in ("coverage", "rho_events", "rho_theta")]
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
