"""Candidate networks and training settings for ``gmmpyro demo``: cost against accuracy.

Each candidate is trained on the demo's training set (the toy with ``x3_shift = 0.3``,
``--per-point`` × 245 events, each at its own ``(cx, cy, nu)`` drawn uniformly over the box of
the demo's 7 × 7 × 5 grid, with the joint score; seed 0) and measured:
seconds per epoch, the KL gap ``E[ln p_true - ln p_model]`` on 20 000 fresh events at five
points (the demo's truth, the centre and three others) and the cost of one ``log_prob`` + ∂θ
at 400 prepared events (what one NUTS leapfrog step pays). Candidates run one after the other
in one process and print one table with the machine.

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/demo_network.py [--candidates lowrank_b2000 film_b2000 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
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
    "paper_b2000": ("paper", 2000, 3e-3, 25),
    "lowrank_b2000": ("lowrank", 2000, 3e-3, 25),
    "film_b2000": ("film", 2000, 3e-3, 25),
    "film64_b2000": ("film64", 2000, 3e-3, 25),
}


def network(design: str) -> gmmpyro.NetworkConfig:
    """The demo's widths in each design (the low-rank heads start at the paper's scale 0.01).

    ``film``: a modulated layer as wide as the event branches (32); ``film64``: 64 wide.
    """
    if design == "paper":
        return dataclasses.replace(QUICK_NETWORK, design="paper", s_f=0.1, s_mu=0.1, s_sigma=0.1)
    if design.startswith("film"):
        return dataclasses.replace(QUICK_NETWORK, design="film", film_width=int(design[4:] or 32))
    return dataclasses.replace(QUICK_NETWORK, design=design)


def measure(name: str, per_point: int) -> dict:
    design, batch, lr, epochs = CANDIDATES[name]
    settings = dataclasses.replace(DemoSettings.quick(), per_point=per_point)
    toy, x, theta, score = _simulate(settings, seed=0)
    torch.manual_seed(0)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=network(design))
    config = paper_training_config(batch_size=batch, learning_rate=lr, max_epochs=epochs, stop_patience=5, seed=0)
    tic = time.perf_counter()
    model.fit(x.float(), theta.float(), score=score.float(), score_weight=settings.score_weight, progress=False,
              config=config)  # fmt: skip
    seconds = time.perf_counter() - tic
    gaps = []
    for i, point in enumerate(torch.tensor(_POINTS, dtype=torch.float64)):
        events = toy.sample(20_000, point, seed=100 + i)
        gaps.append(kl_gap(model, toy, events, point.expand(20_000, 3)).value)
    events = toy.sample(400, torch.tensor(_POINTS[0], dtype=torch.float64), seed=1).float()
    grad_ms, _ = gradient_cost(model, events)
    compiled_ms = compile_s = math.nan
    try:
        model.compile()
    except ValueError:  # compile() declines the designs it does not cover
        pass
    else:
        compiled_ms, compile_s = gradient_cost(model, events)
    return {
        "name": name, "weights": model.n_parameters, "epochs": model.history.n_epochs,
        "s_per_epoch": seconds / model.history.n_epochs, "kl": gaps, "grad_ms": grad_ms,
        "compiled_ms": compiled_ms, "compile_s": compile_s,
    }  # fmt: skip


def gradient_cost(model: gmmpyro.DensityModel, events: torch.Tensor) -> tuple[float, float]:
    """Milliseconds per ``log_prob`` + ∂θ of the prepared events (mean of 40), and seconds of the warm-up calls."""
    prepared = model.prepare(events)
    theta0 = torch.tensor(_POINTS[0], requires_grad=True)
    tic = time.perf_counter()
    for _ in range(5):
        torch.autograd.grad(prepared.log_prob(theta0).sum(), theta0)
    warmup = time.perf_counter() - tic
    tic = time.perf_counter()
    for _ in range(40):
        torch.autograd.grad(prepared.log_prob(theta0).sum(), theta0)
    return (time.perf_counter() - tic) / 40 * 1e3, warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--per-point", type=int, default=DemoSettings.quick().per_point)
    args = parser.parse_args()
    rows = [measure(name, args.per_point) for name in args.candidates]
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| candidate | weights | epochs | s/epoch | KL gap per point | mean | log_prob+∂θ, 400 events | compiled "
          "(warm-up) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        gaps = " / ".join(f"{g:.4f}" for g in r["kl"])
        mean = sum(r["kl"]) / len(r["kl"])
        compiled = "—" if math.isnan(r["compiled_ms"]) else f"{r['compiled_ms']:.2f} ms ({r['compile_s']:.0f} s)"
        print(f"| {r['name']} | {r['weights']} | {r['epochs']} | {r['s_per_epoch']:.1f} | {gaps} | {mean:.4f} | "
              f"{r['grad_ms']:.2f} ms | {compiled} |")  # fmt: skip


if __name__ == "__main__":
    main()
