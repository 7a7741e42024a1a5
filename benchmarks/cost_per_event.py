"""What one θ costs, split into a fixed part per call and a part per observed event.

``log_prob`` + ∂θ on prepared events (as ``speed.py`` times it) at several numbers of events,
for the paper network and the θ-cheap designs after ``DensityModel.compile()``; a least-squares
line through the timings gives the fixed cost of one call (the θ networks, dispatch, autograd)
and the cost of one more event. ``film`` with ``--floor-width`` (default 4) has a negligible
per-event network: its per-event cost is what a mixture whose components move with θ costs by
itself — the floor of every design in which θ reaches the means and widths. A second table gives
the cost of the elementwise functions that the truncated Gaussians of the bounded latent space
need for each (event, component) pair, compiled and eager.

Speed does not depend on training: the networks are freshly initialised and fitted for one
epoch on a small toy dataset (as ``speed.py`` does without ``--model-*``). Rows run interleaved
(``--rounds`` passes over all rows), so that a change in the machine's load falls on all of them.

Usage::

    OMP_NUM_THREADS=1 python -P benchmarks/cost_per_event.py
    OMP_NUM_THREADS=1 python -P benchmarks/cost_per_event.py --events 8 400 2000 --dtype float64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

# benchmarks/profile.py would shadow the standard library's profile module: keep this folder last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402
from nuts import machine_info  # noqa: E402  (benchmarks/nuts.py)
from speed import gmmpyro_model, load_average, log_prob_grad_ms, toy_events  # noqa: E402

from gmmpyro.toy import ToyModel, paper_config  # noqa: E402

ELEMENTWISE = {
    "erfc (truncation, near side)": torch.erfc,
    "erf": torch.erf,
    "exp": torch.exp,
    "log": lambda x: torch.log(x.abs() + 1.0),
}


def rows(floor_width: int) -> dict:
    """Row label → (network config, whether to compile)."""
    paper = paper_config()
    return {
        "paper network": (paper, False),
        "amplitudes R = 16, compiled": (replace(paper, design="amplitudes", rank=16), True),
        f"film H = {floor_width}, compiled (floor)": (replace(paper, design="film", film_width=floor_width), True),
        "film H = 32, compiled": (replace(paper, design="film", film_width=32), True),
        "film H = 64, compiled": (replace(paper, design="film", film_width=64), True),
    }


def elementwise_us(shape: tuple[int, ...], dtype: torch.dtype, repeats: int) -> dict[str, tuple[float, float]]:
    """µs per call of each function in ``ELEMENTWISE`` on a tensor of ``shape``: ``(compiled, eager)``.

    A compiled call also pays the compiled function's own overhead (its guards), as every
    compiled kernel of gmmpyro does.
    """
    x = 3.0 * torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    out = {}
    for name, fn in ELEMENTWISE.items():
        times = []
        for call in (torch.compile(fn), fn):
            call(x)
            start = time.perf_counter()
            for _ in range(repeats):
                call(x)
            times.append(1e6 * (time.perf_counter() - start) / repeats)
        out[name] = (times[0], times[1])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[8, 100, 400, 2000])
    parser.add_argument("--reference-events", type=int, default=400, help="the column of the ratio to the paper")
    parser.add_argument("--floor-width", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per median")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved passes over the rows; the median is kept")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.reference_events not in args.events:
        parser.error(f"--reference-events {args.reference_events} is not among --events {args.events}")
    torch.set_num_threads(args.threads)
    cpu, dtype = torch.device("cpu"), getattr(torch, args.dtype)

    x_train, theta_train = ToyModel().grid_dataset(20, seed=0)
    data = (x_train.to(dtype), theta_train.to(dtype))
    models = {}
    for label, (network, compile_it) in rows(args.floor_width).items():
        models[label], _ = gmmpyro_model(None, network, data, device=cpu, dtype=dtype, seed=0)
        if compile_it:
            models[label].compile()
    events = {n: toy_events(n, 1, cpu, dtype) for n in args.events}
    timings = {label: {n: [] for n in args.events} for label in models}
    for _ in range(args.rounds):
        for label, model in models.items():
            for n, x in events.items():
                timings[label][n].append(log_prob_grad_ms(model, x, args.repeats))
    medians = {label: {n: statistics.median(t) for n, t in by_n.items()} for label, by_n in timings.items()}

    print("machine: " + " | ".join(f"{k} {v}" for k, v in machine_info(cpu).items()) + f" | dtype {args.dtype}")
    load = load_average()
    if load is not None:
        print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{v:.2f}' for v in load)}")
    print(f"log_prob + ∂θ on prepared events, ms (median of {args.rounds} interleaved medians of {args.repeats}):")
    print()
    reference = medians["paper network"][args.reference_events]
    print("| design | " + " | ".join(f"{n} events" for n in args.events)
          + f" | fixed per call (ms) | per event (µs) | paper ÷ design at {args.reference_events} |")  # fmt: skip
    print("|---|" + "---:|" * (len(args.events) + 3))
    result = {}
    for label, by_n in medians.items():
        per_event_ms, fixed = statistics.linear_regression(list(by_n), list(by_n.values()))  # least squares
        per_event = 1e3 * per_event_ms  # µs
        result[label] = {"ms": by_n, "fixed_ms": fixed, "per_event_us": per_event}
        cells = " | ".join(f"{t:.3f}" for t in by_n.values())
        print(f"| {label} | {cells} | {fixed:.3f} | {per_event:.2f} | {reference / by_n[args.reference_events]:.1f} |")
    print()
    shape = (3, 20, args.reference_events)
    elementwise = elementwise_us(shape, dtype, 10 * args.repeats)
    print(f"elementwise functions on {shape[0] * shape[1] * shape[2]} elements (3 later factors × 20 components "
          f"× {args.reference_events} events), µs per call, compiled and eager:")  # fmt: skip
    print()
    print("| function | compiled | eager |")
    print("|---|---:|---:|")
    for name, (compiled, eager) in elementwise.items():
        print(f"| {name} | {compiled:.1f} | {eager:.1f} |")
    return {"timings": result, "elementwise_us": elementwise}


if __name__ == "__main__":
    main()
