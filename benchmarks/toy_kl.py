"""Accuracy and training cost on the reference toy: the KL gap at held-out parameter points.

Trains a paper-size DensityModel on the toy's 49-point grid and reports, at 12 points off
or on the grid, the KL gap = mean over fresh events of ``log p_true(x|c) - log p_model(x|c)``
(nats/event), with its Monte-Carlo standard error, plus training time, epochs and size.
With ``--peers`` the same events and protocol also train zuko's conditional neural spline
flow and sbi's mixture-density likelihood estimator (``pip install 'gmmpyro[benchmarks]'``).

    OMP_NUM_THREADS=1 python benchmarks/toy_kl.py   # 10k events per grid point
    python benchmarks/toy_kl.py --full           # 50k events per grid point (paper)
    python benchmarks/toy_kl.py --peers --save toy.gmm
    python benchmarks/toy_kl.py --design lowrank --rank 16 --save toy_lowrank.gmm
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# benchmarks/profile.py would shadow the standard library's profile module that torch
# imports: keep this folder on the path, but last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

import gmmpyro  # noqa: E402
from gmmpyro.networks import DESIGNS  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config, paper_training_config  # noqa: E402

POINTS = [(cx, cy) for cx in (-0.8, 0.0, 0.8) for cy in (-0.8, 0.0, 0.8)] + [(1.0, -1.0), (-1.5, 1.5)]


def machine() -> str:
    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | "
        f"{torch.get_num_threads()} torch threads | torch {torch.__version__} | gmmpyro {gmmpyro.__version__}"
    )


def kl_gaps(log_prob, toy: ToyModel, n_events: int, seed: int) -> list[tuple[float, float]]:
    """Per point: (mean gap, standard error) over ``n_events`` fresh toy events."""
    results = []
    for j, point in enumerate(POINTS):
        theta = torch.tensor(point, dtype=torch.float64)
        x = toy.sample(n_events, theta, seed=seed + j)
        with torch.no_grad():
            gap = toy.log_prob(x, theta) - log_prob(x, theta).double()
        results.append((gap.mean().item(), gap.std().item() / n_events**0.5))
    return results


def train_gmmpyro(x, theta, args):
    network = replace(paper_config(), design=args.design, rank=args.rank, n_gauss=args.n_gauss)
    model = gmmpyro.DensityModel(ToyModel().observables, ["cx", "cy"], config=network)
    config = paper_training_config(
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        stop_patience=args.stop_patience,
        seed=args.seed,
    )
    tic = time.perf_counter()
    history = model.fit(x, theta, config=config, progress=not args.quiet)
    seconds = time.perf_counter() - tic
    if args.save:
        model.save(args.save)
    return model.log_prob, seconds, history.n_epochs, model.n_parameters, model


def train_zuko(x, theta, args):
    from _peers import fit_flow, toy_nsf

    return fit_flow("zuko NSF", toy_nsf(), x, theta, args)


def train_sbi(x, theta, args):
    from _peers import fit_sbi, toy_mdn

    return fit_sbi(toy_mdn(), x, theta, args)


def throughput(log_prob, x, theta, repeats: int = 20) -> float:
    """Events per second of log_prob plus its gradient in theta, 400 events at one theta."""
    theta = theta.clone().requires_grad_(True)
    for _ in range(3):
        torch.autograd.grad(log_prob(x, theta).sum(), theta)
    tic = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(log_prob(x, theta).sum(), theta)
    return repeats * x.shape[0] / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-point", type=int, default=10_000, help="events per grid point")
    parser.add_argument("--full", action="store_true", help="50k events per grid point, as in the paper")
    parser.add_argument("--eval-events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--stop-patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--design", choices=DESIGNS, default="paper", help="gmmpyro's network design")
    parser.add_argument("--rank", type=int, default=16, help="rank of the low-rank designs")
    parser.add_argument("--n-gauss", type=int, default=paper_config().n_gauss, help="components per observable")
    parser.add_argument("--peers", action="store_true", help="also train zuko NSF and sbi MDN")
    parser.add_argument("--save", help="write the trained model here")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    per_point = 50_000 if args.full else args.per_point
    torch.manual_seed(args.seed)
    toy = ToyModel()
    x, theta = toy.grid_dataset(per_point, seed=args.seed)
    x, theta = x.float(), theta.float()
    contenders = {"gmmpyro": train_gmmpyro}
    if args.peers:
        contenders.update({"zuko NSF": train_zuko, "sbi MDN": train_sbi})
    results = {}
    for name, trainer in contenders.items():
        log_prob, seconds, epochs, size, _ = trainer(x, theta, args)
        gaps = kl_gaps(log_prob, toy, args.eval_events, seed=10_000 + args.seed)
        x_obs = toy.sample(400, [0.8, -0.8], seed=1).float()
        results[name] = {
            "gaps": gaps,
            "mean_gap": sum(g for g, _ in gaps) / len(gaps),
            "worst_gap": max(g for g, _ in gaps),
            "train_seconds": seconds,
            "epochs": epochs,
            "parameters": size,
            "events_per_second": throughput(log_prob, x_obs, torch.tensor([0.8, -0.8])),
        }
    print(f"\nmachine: {machine()}")
    print(
        f"training events: {x.shape[0]} ({per_point} per grid point), KL gap over {args.eval_events} events/point\n"
    )
    header = "| point (cx, cy) | " + " | ".join(f"{n} gap ± s.e." for n in results) + " |"
    print(header)
    print("|" + "---|" * (1 + len(results)))
    for j, point in enumerate(POINTS):
        cells = " | ".join(f"{r['gaps'][j][0]:+.4f} ± {r['gaps'][j][1]:.4f}" for r in results.values())
        print(f"| ({point[0]:+.1f}, {point[1]:+.1f}) | {cells} |")
    print()
    ours = results["gmmpyro"]
    print(
        "| model | mean gap | worst gap | train time (s) | epochs | parameters | log_prob+grad events/s "
        "| time ratio | speed ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['mean_gap']:.4f} | {r['worst_gap']:.4f} | {r['train_seconds']:.0f} | {r['epochs']} | "
            f"{r['parameters']} | {r['events_per_second']:.3g} | {r['train_seconds'] / ours['train_seconds']:.2f} | "
            f"{r['events_per_second'] / ours['events_per_second']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine(), "per_point": per_point, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
