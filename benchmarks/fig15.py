"""Inference agreement of a trained toy model with the truth: the journal's Section 6 / Fig. 15.

Nine pseudo-datasets of 400 events are drawn from the exact toy density at the true points
``c ∈ {-0.8, 0, 0.8}²``; the model and the truth are scanned on the same grid with
``gmmpyro.inference.profile.scan``, and per point the script reports the distance between the
two maximum-likelihood estimates and the intersection over union of the 68 % and 95 % Wilks
regions (``gmmpyro.validation.contour_agreement``). Targets: mean 68 % IoU ≥ 0.85, mean 95 %
IoU ≥ 0.90 and mean MLE distance ≤ 0.015. At 400 events the 68 % region has a radius of about 0.1, so each
dataset is scanned on its own grid, truth ± ``--window`` (default 0.4, 41² points: a step of
0.02), rather than on the whole ±1.5 range (``--window 0``; a 61² grid has a step of 0.05).

With ``--train-extra`` a second model is trained on the paper's cure for the over-coverage near
``c = 0``: the 7 × 7 grid plus every point with ``cx`` or ``cy`` = ±0.2 (a 9 × 9 grid), and the
same nine datasets are scanned with it (Fig. 15 b). Run it with ``python -P`` (``benchmarks/profile.py``
would otherwise shadow the standard library's ``profile``, which torch imports).

    python -P benchmarks/fig15.py --model benchmarks/out/toy10k.gmm --figure benchmarks/out/fig15.png
    python -P benchmarks/fig15.py --model benchmarks/out/toy10k.gmm --train-extra --per-point 10000 \\
        --save-extra benchmarks/out/toy10k_extra.gmm --figure benchmarks/out/fig15.png
    python -P benchmarks/fig15.py --model benchmarks/out/toy10k.gmm \\
        --extra-model benchmarks/out/toy10k_extra.gmm --figure benchmarks/out/fig15.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch

import gmmpyro
from gmmpyro.plotting import plot_contour_agreement
from gmmpyro.toy import ToyModel, paper_config, paper_training_config
from gmmpyro.validation import contour_agreement

TRUTHS = [[cx, cy] for cx in (-0.8, 0.0, 0.8) for cy in (-0.8, 0.0, 0.8)]
GRID_VALUES = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
EXTRA_VALUES = tuple(sorted((*GRID_VALUES, -0.2, 0.2)))


def machine() -> str:
    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
        f"{torch.get_num_threads()} torch threads | torch {torch.__version__} | gmmpyro {gmmpyro.__version__}"
    )


def train_extra(args) -> tuple[gmmpyro.DensityModel, list[list[float]], float]:
    """The paper-size model on the 9 × 9 grid: the 7 × 7 grid plus cx or cy = ±0.2."""
    grid = [list(p) for p in itertools.product(EXTRA_VALUES, EXTRA_VALUES)]
    toy = ToyModel()
    x, theta = toy.grid_dataset(args.per_point, grid=grid, seed=args.seed + 100)
    model = gmmpyro.DensityModel(toy.observables, ["cx", "cy"], config=paper_config(), device=args.device)
    config = paper_training_config(max_epochs=args.max_epochs, stop_patience=args.stop_patience, seed=args.seed)
    tic = time.perf_counter()
    model.fit(x.float(), theta.float(), config=config, progress=not args.quiet)
    seconds = time.perf_counter() - tic
    if args.save_extra:
        model.save(args.save_extra)
    print(f"trained the extra-points model on {len(grid)} points × {args.per_point} events in {seconds:.0f} s")
    print(f"  {model.history!r}")
    return model.to("cpu"), grid, seconds


def run(label: str, model, toy: ToyModel, args):
    grid = {"cx": (-1.5, 1.5, args.grid_points), "cy": (-1.5, 1.5, args.grid_points)}
    window = args.window if args.window > 0 else None
    tic = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gmmpyro.GmmpyroWarning)
        result = contour_agreement(
            model, toy, TRUTHS, n_events=args.events, grid=grid, window=window, seed=args.seed,
            progress=not args.quiet,
        )  # fmt: skip
    seconds = time.perf_counter() - tic
    where = f"truth ± {args.window}" if window else "the whole range"
    print(f"\n## {label}: {args.events} events per dataset, {args.grid_points}² grid over {where}, {seconds:.0f} s")
    if caught:
        kinds = sorted({f"{w.category.__name__}: {str(w.message)[:90]}" for w in caught})
        print(f"({len(caught)} warnings, e.g. {kinds[0]})")
    print("\n| true (cx, cy) | MLE truth | MLE model | MLE distance | IoU 68 % | IoU 95 % | q_model(truth) |")
    print("|---|---|---|---|---|---|---|")
    for i, t in enumerate(result.truths):
        if result.failed[i]:
            print(f"| ({t[0]:+.1f}, {t[1]:+.1f}) | scan failed: {result.failed[i]} |||||")
            continue
        r, m = result.mle_reference[i], result.mle_model[i]
        print(
            f"| ({t[0]:+.1f}, {t[1]:+.1f}) | ({r[0]:+.3f}, {r[1]:+.3f}) | ({m[0]:+.3f}, {m[1]:+.3f}) | "
            f"{result.mle_distance[i]:.4f} | {result.iou_68[i]:.3f} | {result.iou_95[i]:.3f} | "
            f"{result.q_truth_model[i]:.2f} |"
        )
    ok = result.mean_iou_68 >= 0.85 and result.mean_iou_95 >= 0.90 and result.mean_mle_distance <= 0.015
    print(
        f"| **mean** | | | **{result.mean_mle_distance:.4f}** | **{result.mean_iou_68:.3f}** | "
        f"**{result.mean_iou_95:.3f}** | |"
    )
    print(f"\ntarget (mean IoU 68 % ≥ 0.85, IoU 95 % ≥ 0.90, MLE distance ≤ 0.015): {'met' if ok else 'NOT met'}")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained toy model (DensityModel.save)")
    parser.add_argument("--continuous", action="store_true", help="--model was trained on one θ per event, no grid")
    parser.add_argument("--label", help="the model's name in the tables and the figure")
    parser.add_argument("--train-extra", action="store_true", help="also train the model with points at ±0.2")
    parser.add_argument("--extra-model", help="an already trained extra-points model instead of --train-extra")
    parser.add_argument("--save-extra", help="write the extra-points model here")
    parser.add_argument("--per-point", type=int, default=10_000, help="training events per point (paper: 50k)")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--stop-patience", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="where to train the extra model")
    parser.add_argument("--events", type=int, default=400, help="events per pseudo-dataset")
    parser.add_argument("--grid-points", type=int, default=41, help="scan grid points per parameter")
    parser.add_argument("--window", type=float, default=0.4, help="grid half-width around each truth (0: ±1.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", help="save Fig. 15 here (the extra model's as <stem>_extra<suffix>)")
    parser.add_argument("--json", help="write the per-point results here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.train_extra and args.extra_model:
        parser.error("give --train-extra or --extra-model, not both")

    print(f"machine: {machine()}")
    toy = ToyModel()
    model = gmmpyro.DensityModel.load(args.model)
    if model.history is not None:
        print(f"model {args.model}: {model.n_parameters} parameters; {model.history!r}")
    trained = None if args.continuous else [list(p) for p in itertools.product(GRID_VALUES, GRID_VALUES)]
    runs = {args.label or ("one θ per event" if args.continuous else "paper grid (7 × 7)"): (model, trained)}
    extra_seconds = None
    if args.train_extra:
        extra, grid, extra_seconds = train_extra(args)
        runs["with ±0.2 points (9 × 9)"] = (extra, grid)
    elif args.extra_model:
        grid = [list(p) for p in itertools.product(EXTRA_VALUES, EXTRA_VALUES)]
        runs["with ±0.2 points (9 × 9)"] = (gmmpyro.DensityModel.load(args.extra_model), grid)

    out = {"machine": machine(), "extra_training_seconds": extra_seconds, "runs": {}}
    for j, (label, (m, trained)) in enumerate(runs.items()):
        result, seconds = run(label, m, toy, args)
        out["runs"][label] = {"seconds": seconds, **result.summary()}
        if args.figure:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            path = Path(args.figure)
            if j:
                path = path.with_name(f"{path.stem}_extra{path.suffix}")
            fig = plot_contour_agreement(result, trained_points=trained)
            fig.suptitle(f"{label}: model (blue) vs truth (orange), 68 % solid / 95 % dashed", fontsize="small")
            fig.savefig(path, dpi=130)
            plt.close(fig)
            print(f"figure: {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
