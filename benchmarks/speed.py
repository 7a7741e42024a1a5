"""Inference speed side by side: gmmpyro's network designs, zuko's NSF and sbi's MDN.

One run, one machine, the same toy events (drawn from the exact toy at cx = 0.8, cy = -0.8)
for every row; one Markdown table plus the machine line. Rows: gmmpyro with the paper
network (``paper_config()``), gmmpyro with the low-rank design (``design="lowrank"``) and
with θ in the mixture amplitudes alone (``design="amplitudes"``), with θ modulating a hidden
layer (``design="film"``), the last two also after ``DensityModel.compile()``
(``amplitudes-compiled``, ``film-compiled``; the compilation falls in the warm-up calls and the
scan's first chunks), zuko's conditional NSF and
sbi's MDN likelihood estimator (built as in ``toy_kl.py --peers``, :mod:`_peers`). Columns:

* ``log_prob`` + ∂θ at 400 and at ``--events-large`` events: ms per evaluation of the
  summed log-likelihood and its gradient in θ, median of ``--repeats`` after two warm-up
  calls. The θ-independent work is done once, outside the timing: ``model.prepare(x)`` for
  gmmpyro, standardised events for the flow, the events as sbi's sample dimension for the
  MDN (one network call per θ) — each peer's fastest public path;
* a 61 × 61 scan of ``(cx, cy)`` over ``[-1.5, 1.5]²`` at 400 events, without gradients,
  in seconds: ``gmmpyro.profile.scan`` for gmmpyro (its global fit included; the grid alone,
  scored like the peers', is printed below the table); for the peers the same grid scored
  by :class:`gmmpyro.inference.Likelihood` in the default chunks of :class:`~gmmpyro.inference.Likelihood`;
* NUTS, ``--nuts-chains`` × (``--nuts-warmup`` + ``--nuts-draws``) at 400 events, priors
  Uniform(-1.5, 1.5): the smallest bulk ESS per second of wall time over the parameters,
  and the share of sampling time spent in ``log_prob`` (forward and backward), measured as
  in ``nuts.py``. The peers run NUTS too, through the very same
  :func:`gmmpyro.bayes.sample_posterior` (wrapped by :class:`_peers.PeerDensity`): same Pyro
  model, kernel settings, starting points and timers, so only the density differs;
* the speed-up against the paper network for the four numbers (> 1: faster).

Models come from ``--model-paper`` / ``--model-lowrank`` / ``--model-amplitudes`` / ``--model-film`` (files written by
``DensityModel.save``); otherwise, and always for the peers, networks are freshly
initialised and fitted for one epoch on a small toy dataset. Speed does not depend on
training, but NUTS' ESS does (the posterior's shape sets the trajectory lengths): the output
says when untrained models are used. The peers need ``pip install 'gmmpyro[benchmarks]'``;
without them their rows are left out. Chains run one after the other, in this process.

Examples::

    OMP_NUM_THREADS=1 python -P benchmarks/speed.py --model-paper toy.gmm --model-lowrank toy_lowrank.gmm
    python -P benchmarks/speed.py --device cuda --threads 4 --json speed.json
    python -P benchmarks/speed.py --quick --skip-nuts     # smoke test, under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

# benchmarks/profile.py would shadow the standard library's profile module that torch imports
# on the first double backward (the scans' fits): keep this folder on the path, but last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from nuts import machine_info, timed_nuts  # noqa: E402  (benchmarks/nuts.py)

import gmmpyro  # noqa: E402
from gmmpyro.inference.likelihood import Likelihood  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config, paper_training_config  # noqa: E402

TRUTH = (0.8, -0.8)
BOUNDS = (-1.5, 1.5)
ROWS = {
    "paper": "gmmpyro paper",
    "lowrank": "gmmpyro lowrank",
    "amplitudes": "gmmpyro amplitudes",
    "amplitudes-compiled": "gmmpyro amplitudes, compiled",
    "film": "gmmpyro film",
    "film-compiled": "gmmpyro film, compiled",
    "nsf": "zuko NSF",
    "mdn": "sbi MDN",
}
_OWN = ("paper", "lowrank", "amplitudes", "amplitudes-compiled", "film", "film-compiled")
_PEER_PACKAGE = {"nsf": "zuko", "mdn": "sbi"}


def _now(cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def log_prob_grad_ms(density, x: torch.Tensor, repeats: int) -> float:
    """Median ms of ``sum log p(x | θ)`` and its θ-gradient, events prepared once."""
    cuda = x.device.type == "cuda"
    prepared = density.prepare(x)
    theta = torch.tensor(TRUTH, dtype=density.dtype, device=density.device).requires_grad_()
    times = []
    for i in range(repeats + 2):  # two warm-up calls
        start = _now(cuda)
        torch.autograd.grad(prepared.log_prob(theta).sum(), theta)
        if i >= 2:
            times.append(_now(cuda) - start)
    return 1e3 * statistics.median(times)


def grid_axes(n: int) -> dict:
    return {"cx": (*BOUNDS, n), "cy": (*BOUNDS, n)}


def grid_seconds(density, x: torch.Tensor, n: int) -> float:
    """Seconds to prepare the events and score the ``n × n`` grid, chunked, without gradients."""
    cuda = x.device.type == "cuda"
    axis = torch.linspace(*BOUNDS, n, dtype=density.dtype, device=density.device)
    theta = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)  # G k
    with torch.no_grad():
        Likelihood(density, x).log_likelihood(theta[:3])  # warm-up
        start = _now(cuda)
        Likelihood(density, x).log_likelihood(theta)  # G
        return _now(cuda) - start


def scan_seconds(model, x: torch.Tensor, n: int) -> float:
    """Seconds of ``gmmpyro.profile.scan`` over the ``n × n`` grid, after a tiny warm-up scan."""
    cuda = x.device.type == "cuda"
    with warnings.catch_warnings():  # warms up double backward and (CUDA) the solvers
        warnings.simplefilter("ignore")
        gmmpyro.profile.scan(model, x[:8], grid_axes(3), config=gmmpyro.FitConfig(n_starts=1, max_iter=3))
    start = _now(cuda)
    gmmpyro.profile.scan(model, x, grid_axes(n))
    return _now(cuda) - start


def nuts_numbers(density, x: torch.Tensor, *, chains: int, warmup: int, draws: int, seed: int) -> dict:
    """``timed_nuts`` with uniform priors, plus the smallest bulk ESS/s over the parameters."""
    # priors in the density's dtype: Pyro takes the mass matrix's dtype from the potential energy
    low, high = torch.tensor(BOUNDS, dtype=density.dtype)
    priors = {p: dist.Uniform(low, high) for p in density.params}
    r = timed_nuts(density, x, priors, num_samples=draws, warmup_steps=warmup, num_chains=chains,
                   seed=seed, progress=False)  # fmt: skip
    return {**r, "min_bulk_ess_per_s": min(r["bulk_ess_per_s"].values())}


def toy_events(n: int, seed: int, device, dtype) -> torch.Tensor:
    """``n`` events of the exact toy at ``TRUTH``, in ``dtype``."""
    x = ToyModel(device=device).sample(n, TRUTH, seed=seed).to(dtype)  # N d
    pi = torch.tensor(math.pi, dtype=dtype, device=device)
    if pi.double() > math.pi:  # x2 lies in [-π, π]: keep rounded values inside
        pi = torch.nextafter(pi, torch.zeros_like(pi))
    x[:, 2] = x[:, 2].clamp(-pi, pi)
    return x


def gmmpyro_model(path: str | None, network, data, *, device, dtype, seed: int):
    """A saved model, or one freshly fitted for one epoch on ``data``; returns (model, how)."""
    if path is not None:
        model = gmmpyro.DensityModel.load(path, map_location=device).to(dtype=dtype)
        return model, f"loaded from {path} ({model.config.design} design)"
    torch.manual_seed(seed)
    model = gmmpyro.DensityModel(ToyModel().observables, ["cx", "cy"], config=network, device=device, dtype=dtype)
    model.fit(*data, config=paper_training_config(max_epochs=1, seed=seed), progress=False)
    return model, f"untrained: 1 epoch on {data[0].shape[0]} toy events"


@contextlib.contextmanager
def warnings_into(notes: list[str], name: str):
    """Collect the warnings of one row (untrained models give many) for the notes below the table."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        yield
    seen = dict.fromkeys(f"{name}: {w.category.__name__}: {str(w.message).splitlines()[0]}" for w in log)
    notes.extend(seen)


def _n_weights(density) -> int:
    module = density if isinstance(density, torch.nn.Module) else density.module
    return sum(p.numel() for p in module.parameters())


def measure(name: str, density, events: dict, args, notes: list[str]) -> dict:
    """All columns of one row."""
    small, large = events["small"], events["large"]
    r = {"weights": _n_weights(density)}
    with warnings_into(notes, name):
        r["log_prob_grad_ms"] = log_prob_grad_ms(density, small, args.repeats)
        r["log_prob_grad_large_ms"] = log_prob_grad_ms(density, large, args.repeats)
        r["grid_s"] = grid_seconds(density, small, args.grid)
        is_gmmpyro = isinstance(density, gmmpyro.DensityModel)
        r["scan_s"] = scan_seconds(density, small, args.grid) if is_gmmpyro else r["grid_s"]
        if not args.skip_nuts:
            r["nuts"] = nuts_numbers(density, small, chains=args.nuts_chains, warmup=args.nuts_warmup,
                                     draws=args.nuts_draws, seed=args.seed)  # fmt: skip
    return r


def load_average() -> tuple[float, ...] | None:
    """``os.getloadavg()``, or ``None`` where the platform has none."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # not on every platform
        return None


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(results: dict, args) -> None:
    n_large = args.events_large
    print(
        f"| model | weights | log_prob+∂θ, {args.events} events [ms] | log_prob+∂θ, {n_large} events [ms] "
        f"| {args.grid}×{args.grid} scan, {args.events} events [s] | NUTS bulk ESS/s (min) | NUTS time in log_prob "
        "| speed-up vs paper (small / large / scan / ESS/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    paper = results.get(ROWS["paper"])
    for name, r in results.items():
        nuts = r.get("nuts")
        ess = nuts["min_bulk_ess_per_s"] if nuts else None
        share = 100 * nuts["log_prob_share"] if nuts else None
        ratios = "—"
        if paper is not None:
            paper_ess = paper["nuts"]["min_bulk_ess_per_s"] if "nuts" in paper else None
            parts = [paper[k] / r[k] for k in ("log_prob_grad_ms", "log_prob_grad_large_ms", "scan_s")]
            parts.append(ess / paper_ess if ess is not None and paper_ess else None)
            ratios = " / ".join(_fmt(p, ".2f") for p in parts)
        print(
            f"| {name} | {r['weights']} | {r['log_prob_grad_ms']:.3g} | {r['log_prob_grad_large_ms']:.3g} "
            f"| {r['scan_s']:.3g} | {_fmt(ess, '.3g')} | {_fmt(share, '.0f')}{' %' if share is not None else ''} "
            f"| {ratios} |"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-paper", help="a saved DensityModel with the paper network")
    parser.add_argument("--model-lowrank", help="a saved DensityModel with the low-rank design")
    parser.add_argument("--model-amplitudes", help="a saved DensityModel with the amplitudes design")
    parser.add_argument("--model-film", help="a saved DensityModel with the film design")
    parser.add_argument("--rank", type=int, default=16, help="rank of a fresh low-rank or amplitudes model")
    parser.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(ROWS), help="rows to measure")
    parser.add_argument("--skip-peers", action="store_true", help="leave out zuko NSF and sbi MDN")
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--events", type=int, default=400, help="events of the small timing, the scan and NUTS")
    parser.add_argument("--events-large", type=int, default=None, help="events of the large timing (10000)")
    parser.add_argument("--grid", type=int, default=None, help="scan points per axis (61)")
    parser.add_argument("--repeats", type=int, default=None, help="timed log_prob calls (20)")
    parser.add_argument("--nuts-chains", type=int, default=None, help="(4)")
    parser.add_argument("--nuts-warmup", type=int, default=None, help="(500)")
    parser.add_argument("--nuts-draws", type=int, default=None, help="(500)")
    parser.add_argument("--train-per-point", type=int, default=None, help="toy events per point, fresh fits (200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    defaults = {  # full, quick
        "events_large": (10_000, 2_000), "grid": (61, 11), "repeats": (20, 3), "nuts_chains": (4, 2),
        "nuts_warmup": (500, 50), "nuts_draws": (500, 50), "train_per_point": (200, 20),
    }  # fmt: skip
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    torch.set_num_threads(args.threads)
    load_start = load_average()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows = [r for r in args.rows if not (args.skip_peers and r in _PEER_PACKAGE)]
    missing = [r for r in rows if r in _PEER_PACKAGE and importlib.util.find_spec(_PEER_PACKAGE[r]) is None]
    rows = [r for r in rows if r not in missing]

    events = {
        "small": toy_events(args.events, args.seed + 1, device, dtype),
        "large": toy_events(args.events_large, args.seed + 2, device, dtype),
    }
    x_train, theta_train = ToyModel().grid_dataset(args.train_per_point, seed=args.seed)
    data = (x_train.to(dtype), theta_train.to(dtype))
    densities, origin = {}, {}
    for key in _OWN:
        if key in rows:
            design = key.removesuffix("-compiled")
            network = replace(paper_config(), design=design, rank=args.rank)
            densities[ROWS[key]], origin[ROWS[key]] = gmmpyro_model(
                getattr(args, f"model_{design}"), network, data, device=device, dtype=dtype, seed=args.seed
            )
            if key.endswith("-compiled"):
                densities[ROWS[key]].compile()
                origin[ROWS[key]] += "; DensityModel.compile(), compiled in the warm-up calls"
    peers = [ROWS[r] for r in rows if r in _PEER_PACKAGE]
    if peers:
        from _peers import train_peers

        trained = train_peers(peers, data[0].float(), data[1].float(), ToyModel(), epochs=1, seed=args.seed,
                              device=device, dtype=dtype)  # fmt: skip
        for name in peers:
            densities[name], origin[name] = trained[name], f"untrained: 1 epoch on {x_train.shape[0]} toy events"

    notes: list[str] = []
    results = {name: measure(name, d, events, args, notes) for name, d in densities.items()}
    for name, r in results.items():
        r["origin"] = origin[name]
    load_end = load_average()

    machine = {**machine_info(device), "gmmpyro": gmmpyro.__version__, "dtype": args.dtype,
               "load_average_start": load_start, "load_average_end": load_end}  # fmt: skip
    load = " → ".join(", ".join(f"{v:.2f}" for v in a) for a in (load_start, load_end) if a is not None)
    print("machine: " + " | ".join(f"{k} {v}" for k, v in machine.items() if not k.startswith("load_")))
    if load:
        print(f"load average (1, 5, 15 min), start → end: {load}")
    print(
        f"events from the exact toy at (cx, cy) = {TRUTH}; log_prob timings: median of {args.repeats}; "
        + ("NUTS skipped" if args.skip_nuts else
           f"NUTS: {args.nuts_chains} chains × ({args.nuts_warmup} warm-up + {args.nuts_draws} draws), "
           f"priors Uniform{BOUNDS}, ESS/s per second of wall time")
    )  # fmt: skip
    print()
    print_table(results, args)
    print()
    for name, r in results.items():
        print(f"{name}: {r['origin']}")
    untrained = [n for n, r in results.items() if r["origin"].startswith("untrained")]
    if untrained and not args.skip_nuts:
        print("untrained models: timings hold, but NUTS ESS depends on the fitted density; pass trained models")
    grid_only = [f"{n} {r['grid_s']:.3g} s" for n, r in results.items() if n in [ROWS[k] for k in _OWN]]
    if grid_only:
        print(f"scan without the global fit (the grid alone, as for the peers): {', '.join(grid_only)}")
    if missing:
        print(f"left out: {', '.join(ROWS[r] for r in missing)}; pip install 'gmmpyro[benchmarks]'")
    for note in notes:
        print(f"warning: {note}")
    out = {"machine": machine, "args": vars(args), "results": results, "notes": notes}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
