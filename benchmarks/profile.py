"""Batched profile-likelihood scans against the one-point-at-a-time loop.

A 61 × 61 scan of ``(cx, cy)`` on 400 toy events, with the exact toy density as the model
(and a trained :class:`gmmpyro.DensityModel` if a file is given), timed three ways:

* ``gmmpyro.profile.scan``: the global fit plus all grid points in batched calls;
* the same grid scored by a Python loop, one ``model.log_prob(x, θ)`` call per point, and one
  ``prepared.log_prob(θ)`` call per point (θ-independent work done once). The loops are timed
  on a random subset of the points and extrapolated to the full grid (stated in the table);
* with the nuisance ``nu`` profiled (toy with ``x3_shift = 0.3``, unit Gaussian constraint):
  the batched conditional fits against one fit per point in a loop (subset, extrapolated).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/profile.py [--model toy.gmm] [--grid 61] [--events 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

# run as a script, this file's folder heads sys.path and its name shadows the standard library's
# `profile` module, which torch imports (via cProfile) on the first double backward
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402

from gmmpyro.inference.likelihood import Likelihood  # noqa: E402
from gmmpyro.inference.profile import FitConfig, fit, scan  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

TRUTH = (0.8, -0.8)


def machine_info() -> str:
    return (
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs (torch threads: {torch.get_num_threads()}), {platform.processor() or 'cpu'}"
    )


def timed(fn, repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def grid_points(model, n: int) -> torch.Tensor:
    bounds = torch.as_tensor(model.theta_bounds, dtype=model.dtype)[:2]
    axes = [torch.linspace(float(lo), float(hi), n, dtype=model.dtype) for lo, hi in bounds]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)  # G 2


def bench_grid(label: str, model, x: torch.Tensor, n: int, n_loop: int, rows: list) -> None:
    bounds = torch.as_tensor(model.theta_bounds)[:2].tolist()
    grid = {p: (lo, hi, n) for p, (lo, hi) in zip(model.params[:2], bounds, strict=True)}
    scan(model, x, {model.params[0]: (bounds[0][0], bounds[0][1], 5)})  # warm-up (first-call overheads)
    t_scan = timed(lambda: scan(model, x, grid))
    lik = Likelihood(model, x)
    theta = grid_points(model, n).to(model.device)  # G 2
    if len(model.params) > 2:
        theta = torch.cat([theta, torch.zeros(len(theta), len(model.params) - 2, dtype=theta.dtype)], -1)
    with torch.no_grad():
        t_grid = timed(lambda: lik.log_likelihood(theta))
        subset = theta[torch.randperm(len(theta), generator=torch.Generator().manual_seed(0))[:n_loop]]
        x_dev = x.to(model.device, model.dtype)
        t_loop = (
            timed(lambda: [model.log_prob(x_dev, t).sum() for t in subset], repeat=1) * len(theta) / n_loop
        )
        prepared = model.prepare(x_dev)
        t_prep = timed(lambda: [prepared.log_prob(t).sum() for t in subset], repeat=1) * len(theta) / n_loop
    G = len(theta)
    rows.append((label, f"scan(): fit + {n}×{n} grid, batched", t_scan, None))
    rows.append((label, f"{n}×{n} grid only, batched ({-(-G // lik.chunk_size)} call(s))", t_grid, None))
    rows.append(
        (label, f"loop of model.log_prob(x, θ), {n_loop} pts × {G / n_loop:.1f}", t_loop, t_loop / t_scan)
    )
    rows.append(
        (label, f"loop of prepared.log_prob(θ), {n_loop} pts × {G / n_loop:.1f}", t_prep, t_prep / t_scan)
    )


def bench_profiled(x: torch.Tensor, model, n: int, n_loop: int, rows: list) -> None:
    constraint = {"nu": torch.distributions.Normal(0.0, 1.0)}
    grid = {"cx": (-1.5, 1.5, n), "cy": (-1.5, 1.5, n)}
    t_scan = timed(lambda: scan(model, x, grid, profile=["nu"], constraints=constraint), repeat=1)
    lik = Likelihood(model, x, constraints=constraint)
    theta = grid_points(model, n)
    subset = theta[torch.randperm(len(theta), generator=torch.Generator().manual_seed(0))[:n_loop]]

    def loop():
        for cx, cy in subset.tolist():
            fit(lik, fixed={"cx": cx, "cy": cy}, start={"nu": 0.0}, config=FitConfig(n_starts=1))

    t_loop = timed(loop, repeat=1) * len(theta) / n_loop
    rows.append(("toy, nu profiled", f"scan(profile=['nu']): fit + {n}×{n} conditional fits", t_scan, None))
    rows.append(
        (
            "toy, nu profiled",
            f"loop of one fit per point, {n_loop} pts × {len(theta) / n_loop:.1f}",
            t_loop,
            t_loop / t_scan,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained gmmpyro.DensityModel file (toy observables)")
    parser.add_argument("--grid", type=int, default=61)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--loop-points", type=int, default=300)
    parser.add_argument("--profile-loop-points", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    print(machine_info())
    rows: list = []
    toy = ToyModel(device=args.device)
    x = toy.sample(args.events, list(TRUTH), seed=1)
    bench_grid("toy (exact density)", toy, x, args.grid, args.loop_points, rows)
    if args.model:
        from gmmpyro import DensityModel

        trained = DensityModel.load(args.model, map_location=args.device)
        bench_grid("trained DensityModel", trained, x.to(trained.dtype), args.grid, args.loop_points, rows)
    nuisance = ToyModel(x3_shift=0.3, device=args.device)
    x_nu = nuisance.sample(args.events, [*TRUTH, 0.0], seed=1)
    bench_profiled(x_nu, nuisance, args.grid, args.profile_loop_points, rows)

    print(
        f"\n{args.events} events, device {args.device}; loops extrapolated from the stated subset of points\n"
    )
    print("| model | method | time [s] | loop / scan() |")
    print("|---|---|---:|---:|")
    for label, method, t, ratio in rows:
        print(f"| {label} | {method} | {t:.3g} | {'' if ratio is None else f'{ratio:.1f}×'} |")


if __name__ == "__main__":
    main()
