"""Candidate networks and training settings for ``gmmpyro demo``: cost against accuracy.

Each candidate is trained on the demo's training set (the toy with ``x3_shift = 0.3``, a
7 × 7 × 5 grid of ``(cx, cy, nu)``, ``--per-point`` events per point, seed 0) and measured:
seconds per epoch, the KL gap ``E[ln p_true - ln p_model]`` on 20 000 fresh events at five
points (the demo's truth, the centre and three others) and the cost of one ``log_prob`` + ∂θ
at 400 prepared events (what one NUTS leapfrog step pays). Candidates run one after the other
in one process and print one table with the machine.

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/demo_network.py [--candidates paper_b500 lowrank_b2000 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

import gmmpyro
from gmmpyro.cli.demo import QUICK_NETWORK, DemoSettings, _simulate
from gmmpyro.toy import paper_training_config
from gmmpyro.validation import kl_gap

_POINTS = [[0.8, -0.8, 0.5], [0.0, 0.0, 0.0], [-0.8, 0.8, -0.5], [0.8, 0.8, 1.0], [0.3, -1.2, 0.0]]

# name: (design, batch size, learning rate, epochs)
CANDIDATES = {
    "paper_b500": ("paper", 500, 1e-3, 30),
    "paper_b2000": ("paper", 2000, 3e-3, 30),
    "lowrank_b500": ("lowrank", 500, 1e-3, 30),
    "lowrank_b2000": ("lowrank", 2000, 3e-3, 40),
}


def network(design: str) -> gmmpyro.NetworkConfig:
    """The demo's widths in either design (the low-rank heads start at the paper's scale 0.01)."""
    paper = dataclasses.replace(QUICK_NETWORK, design="paper", s_f=0.1, s_mu=0.1, s_sigma=0.1)
    return paper if design == "paper" else QUICK_NETWORK


def measure(name: str, per_point: int) -> dict:
    design, batch, lr, epochs = CANDIDATES[name]
    toy, x, theta = _simulate(dataclasses.replace(DemoSettings.quick(), per_point=per_point), seed=0)
    torch.manual_seed(0)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=network(design))
    config = paper_training_config(batch_size=batch, learning_rate=lr, max_epochs=epochs, stop_patience=5, seed=0)
    tic = time.perf_counter()
    model.fit(x.float(), theta.float(), reference=[0.0, 0.0, 0.0], progress=False, config=config)
    seconds = time.perf_counter() - tic
    gaps = []
    for i, point in enumerate(torch.tensor(_POINTS, dtype=torch.float64)):
        events = toy.sample(20_000, point, seed=100 + i)
        gaps.append(kl_gap(model, toy, events, point.expand(20_000, 3)).value)
    prepared = model.prepare(toy.sample(400, torch.tensor(_POINTS[0], dtype=torch.float64), seed=1).float())
    theta0 = torch.tensor(_POINTS[0], requires_grad=True)
    for _ in range(5):
        torch.autograd.grad(prepared.log_prob(theta0).sum(), theta0)
    tic = time.perf_counter()
    for _ in range(40):
        torch.autograd.grad(prepared.log_prob(theta0).sum(), theta0)
    return {
        "name": name, "weights": model.n_parameters, "epochs": model.history.n_epochs,
        "s_per_epoch": seconds / model.history.n_epochs, "kl": gaps, "grad_ms": (time.perf_counter() - tic) / 40 * 1e3,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--per-point", type=int, default=1000)
    args = parser.parse_args()
    rows = [measure(name, args.per_point) for name in args.candidates]
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| candidate | weights | epochs | s/epoch | KL gap per point | mean | log_prob+∂θ, 400 events |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        gaps = " / ".join(f"{g:.4f}" for g in r["kl"])
        mean = sum(r["kl"]) / len(r["kl"])
        print(f"| {r['name']} | {r['weights']} | {r['epochs']} | {r['s_per_epoch']:.1f} | {gaps} | {mean:.4f} | "
              f"{r['grad_ms']:.1f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
