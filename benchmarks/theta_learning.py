"""How θ is learned, on one event budget: θ design (grid or uniform) and the simulator's joint score.

Each recipe trains the same network (the demo's low-rank network, or with ``--design`` the
paper-size network of that design) on
``--events`` toy events (cx, cy; SPEC §6): on the 7 × 7 grid of the paper with
``events / 49`` per point, or with θ drawn uniformly per event (``gmmpyro.designs.uniform``);
with or without the joint score ``t = ∇θ log p(x|θ)`` that the toy simulator returns with each
event (``fit(score=t, score_weight=α)``). Then the journal's Fig. 15 check: at the nine points
``c ∈ {-0.8, 0, 0.8}²``, ``--datasets`` pseudo-datasets of 400 events each, drawn from the
exact toy density, are scanned with the model and with the truth
(``gmmpyro.validation.contour_agreement``, a 21 × 21 grid of ±0.3 around the truth); the table
gives the mean IoU of the 68 % and 95 % regions and the mean MLE distance, with the standard
error over datasets, and the training time.

Usage::

    python benchmarks/theta_learning.py [--events 49000] [--epochs 60] [--alpha 0.3 1] [--seeds 0]
        [--design paper|lowrank|amplitudes [--rank 16]] [--score-only] [--save-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from dataclasses import replace

# run as a script, this file's folder heads sys.path, and benchmarks/profile.py would shadow the
# standard library's `profile` module, which torch imports (via cProfile)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gmmpyro  # noqa: E402
from gmmpyro import designs  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config  # noqa: E402
from gmmpyro.validation import contour_agreement  # noqa: E402

TRUTHS = [[cx, cy] for cx in (-0.8, 0.0, 0.8) for cy in (-0.8, 0.0, 0.8)]
QUICK = gmmpyro.NetworkConfig(
    n_gauss=12, A1=32, B1=32, B2=12, C=2, D=2, s_f=0.01, s_mu=0.01, s_sigma=0.01, design="lowrank", rank=8
)


def training_events(design: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x (n, 4)``, ``θ (n, 2)`` and the joint scores ``(n, 2)`` of one design."""
    toy = ToyModel()
    if design == "grid":
        theta = designs.grid(7, toy.theta_bounds).repeat_interleave(n // 49, dim=0)
    else:
        theta = designs.uniform(n, toy.theta_bounds, seed=seed)
    x, score = toy.simulate(theta, seed=seed + 1, score=True)
    return x, theta, score


def recipe(args, design: str, alpha: float | None, seed: int) -> dict:
    toy = ToyModel()
    x, theta, score = training_events(design, args.events, seed)
    torch.manual_seed(seed)
    config = replace(paper_config(), design=args.design, rank=args.rank) if args.design else QUICK
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=config)
    config = gmmpyro.TrainingConfig(
        batch_size=args.batch_size, learning_rate=args.lr, max_epochs=args.epochs, stop_patience=8, seed=seed
    )
    tic = time.perf_counter()
    model.fit(x.float(), theta.float(), score=None if alpha is None else score.float(), score_weight=alpha,
              config=config, progress=False)  # fmt: skip
    seconds = time.perf_counter() - tic
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
        model.save(os.path.join(args.save_dir, f"theta_{design}_alpha{alpha or 0}_seed{seed}.gmm"))
    truths = torch.tensor([t for t in TRUTHS for _ in range(args.datasets)], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # edge and convergence notes of individual scans
        agreement = contour_agreement(
            model, toy, truths, n_events=400, grid={"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}, window=0.3,
            seed=1000 + seed,
        )
    return {
        "iou68": agreement.iou_68, "iou95": agreement.iou_95, "distance": agreement.mle_distance,
        "seconds": seconds, "epochs": model.history.n_epochs,
    }  # fmt: skip


def mean_se(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    return f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=49_000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.3, 1.0], help="joint-score weights to try")
    parser.add_argument("--datasets", type=int, default=2, help="pseudo-datasets per true point")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--design", choices=("paper", "lowrank", "amplitudes"),
                        help="the paper-size network of this design instead of the demo's low-rank one")
    parser.add_argument("--rank", type=int, default=16, help="rank of the paper-size low-rank designs")
    parser.add_argument("--score-only", action="store_true", help="only the joint-score rows")
    parser.add_argument("--save-dir", help="save each trained model here")
    args = parser.parse_args()
    network = f"paper-size {args.design}" if args.design else "demo's low-rank"
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | {torch.get_num_threads()} torch threads | "
          f"torch {torch.__version__}; {args.events} events, {network} network, batch {args.batch_size}, "
          f"lr {args.lr}, ≤ {args.epochs} epochs; {9 * args.datasets} datasets of 400 events")  # fmt: skip
    print("| design | joint score α | seed | epochs | training (s) | IoU 68 % | IoU 95 % | MLE distance |")
    print("|---|---:|---:|---:|---:|---|---|---|")
    for seed in args.seeds:
        baselines = [] if args.score_only else [("grid", None), ("uniform", None)]
        for design, alpha in [*baselines, *[("uniform", a) for a in args.alpha]]:
            r = recipe(args, design, alpha, seed)
            cells = [design, alpha or "—", seed, r["epochs"], f"{r['seconds']:.0f}"]
            cells += [mean_se(r[name]) for name in ("iou68", "iou95", "distance")]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
