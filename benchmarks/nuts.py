"""NUTS speed: wall time, gradient evaluations/s, bulk ESS/s and where the time goes.

Runs :func:`gmmpyro.bayes.sample_posterior` on events drawn from the model at a true point,
with uniform priors over the model's parameter range, and prints one table:

* wall time of all chains (warm-up included), gradient evaluations (leapfrog steps) per second;
* bulk ESS (rank-normalised, Vehtari et al. 2021) per parameter and per second of wall time;
* the share of sampling time spent in the likelihood (forward and backward of
  ``prepared.log_prob`` in NUTS' gradient evaluations, timed inside the run; with CUDA each
  timing point synchronises); the rest is Pyro's sampler and gmmpyro's log density around the
  likelihood (priors, transforms);
* the fast path: time of one ``log_prob`` + gradient through :class:`GMMDistribution` with the
  events prepared once (``prepared=model.prepare(x)``), and with their θ-independent work
  redone on every call;
* the sampler's floor: as many chains on a likelihood that costs next to nothing (a Gaussian in
  θ centred on the posterior mean with the posterior's sd per parameter, same priors, chains
  seeded ``seed, seed + 1, ...``): the time per gradient of Pyro's NUTS and the priors' part of
  the log density, which no cheaper likelihood can remove.

Examples::

    OMP_NUM_THREADS=1 python benchmarks/nuts.py                       # exact toy, 400 events
    python benchmarks/nuts.py --model toy.gmm --device cuda --events 100000
    python benchmarks/nuts.py --model toy_amplitudes.gmm --compile    # DensityModel.compile()
    python benchmarks/nuts.py --events 100 --chains 2 --warmup 100 --draws 100   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, field

import arviz as az  # imported here so that its slow first import is not timed
import pyro
import pyro.distributions as dist
import torch

from gmmpyro.distribution import GMMDistribution
from gmmpyro.inference.bayes import NUTSConfig, sample_posterior
from gmmpyro.inference.chains import run_chains
from gmmpyro.inference.target import Target
from gmmpyro.toy import ToyModel


@dataclass
class _Clock:
    """Accumulated seconds inside the likelihood; synchronises CUDA so times are real."""

    cuda: bool
    forward: float = 0.0
    backward: float = 0.0
    calls: int = 0
    _t0: list = field(default_factory=list)

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class _TimedPrepared:
    """Prepared events whose ``log_prob`` is timed when NUTS asks for a gradient."""

    def __init__(self, inner, clock: _Clock) -> None:
        self.inner, self.clock = inner, clock
        self.events, self.n_events = inner.events, inner.n_events
        self.all_inside = getattr(inner, "all_inside", True)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        clock = self.clock
        if not (theta.requires_grad and torch.is_grad_enabled()):  # not a NUTS gradient evaluation
            return self.inner.log_prob(theta)
        start = clock.now()
        theta_in = theta.clone()
        out = self.inner.log_prob(theta_in)
        clock.forward += clock.now() - start
        clock.calls += 1
        if out.requires_grad:  # backward: from the output's gradient to theta's
            out.register_hook(lambda g: clock._t0.append(clock.now()))

            def stop(g):
                if clock._t0:
                    clock.backward += clock.now() - clock._t0.pop()

            theta_in.register_hook(stop)
        return out


class _TimedModel:
    """The model with its prepared events timed; everything else passes through."""

    def __init__(self, model, clock: _Clock) -> None:
        self.model, self.clock = model, clock
        self.observables, self.params = model.observables, model.params

    theta_bounds = property(lambda self: self.model.theta_bounds)
    device = property(lambda self: self.model.device)
    dtype = property(lambda self: self.model.dtype)

    def log_prob(self, x, theta):
        return self.model.log_prob(x, theta)

    def sample(self, n, theta, seed=None):
        return self.model.sample(n, theta, seed)

    def prepare(self, x):
        return _TimedPrepared(self.model.prepare(x), self.clock)

    def __repr__(self) -> str:
        return _describe(self.model)


def _describe(model) -> str:
    if isinstance(model, torch.nn.Module):  # the full module tree is too long for a table
        return f"{type(model).__name__}({model.extra_repr()})"
    return repr(model)


def fast_path_timing(
    model, x: torch.Tensor, theta: torch.Tensor, repeats: int, cuda: bool
) -> tuple[float, float]:
    """Seconds per ``log_prob`` + gradient through GMMDistribution: (prepared events, events redone)."""
    clock = _Clock(cuda)
    th = theta.clone().requires_grad_()
    prepared = model.prepare(x)

    def run(prep):
        d = GMMDistribution(model, th, prepared=prep).expand([len(x)])
        torch.autograd.grad(d.log_prob(x if prep is None else prep.events).sum(), th)

    run(prepared), run(prepared), run(None), run(None)  # warm up
    seconds = [0.0, 0.0]
    for _ in range(repeats):  # interleaved, so that a change of machine load hits both alike
        for i, prep in enumerate((prepared, None)):
            start = clock.now()
            run(prep)
            seconds[i] += clock.now() - start
    return seconds[0] / repeats, seconds[1] / repeats


def timed_nuts(model, x: torch.Tensor, priors: dict, **kwargs) -> dict:
    """Run :func:`sample_posterior` with the likelihood timed; ``kwargs`` go to it.

    Returns wall and sampling seconds, gradient evaluations, bulk ESS per parameter (and per
    second of wall time) and the shares of sampling time in ``prepared.log_prob``.
    """
    clock = _Clock(torch.device(model.device).type == "cuda")
    start = time.perf_counter()
    idata = sample_posterior(_TimedModel(model, clock), x, priors, config=NUTSConfig(), log_likelihood=False, **kwargs)
    wall = time.perf_counter() - start
    sampling = sum(idata["posterior"].attrs["sampling_time"])
    grads = sum(idata["posterior"].attrs["n_grad_evals"])
    ess = {p: float(az.ess(idata["posterior"][p].values, method="bulk")) for p in priors}
    return {
        "wall_s": wall,
        "sampling_s": sampling,
        "grad_evals": grads,
        "grad_evals_per_s": grads / sampling,
        "bulk_ess": ess,
        "bulk_ess_per_s": {p: e / wall for p, e in ess.items()},
        "log_prob_share": (clock.forward + clock.backward) / sampling,
        "log_prob_forward_share": clock.forward / sampling,
        "posterior_mean": {p: float(idata["posterior"][p].mean()) for p in priors},
        "posterior_sd": {p: float(idata["posterior"][p].std()) for p in priors},
    }


def sampler_floor(priors: dict, mean: dict, sd: dict, *, chains: int, warmup: int, draws: int, seed: int) -> dict:
    """Seconds per gradient of the NUTS chains of ``sample_posterior`` on a Gaussian log-likelihood in θ."""

    def gaussian(values: dict) -> torch.Tensor:
        return sum(-0.5 * ((values[p] - mean[p]) / max(sd[p], 1e-6)) ** 2 for p in priors)

    target = Target(priors, gaussian)
    results = run_chains(target, [seed + c for c in range(chains)], num_samples=draws, warmup_steps=warmup,
                         config=NUTSConfig(), progress=False)  # fmt: skip
    seconds, grads = sum(r.seconds for r in results), sum(r.grad_evals for r in results)
    return {"floor_grad_evals": grads, "floor_ms_per_grad": 1e3 * seconds / grads}


def machine_info(device) -> dict:
    """Platform, processor, torch threads and versions, and the device's name."""
    cuda = torch.device(device).type == "cuda"
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""),
    }


def _load(path: str | None, device: str):
    if path is None:
        return ToyModel(device=device)
    from gmmpyro import DensityModel

    model = DensityModel.load(path)
    return model.to(device) if hasattr(model, "to") else model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--model", default=None, help="a saved DensityModel (default: the exact toy)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--truth", type=float, nargs="*", default=None, help="true θ (default 0.8, -0.8, 0...)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50, help="calls per fast-path timing")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--compile", action="store_true", help="DensityModel.compile() first (compiled before the timings)"
    )
    args = parser.parse_args(argv)

    model = _load(args.model, args.device)
    if args.compile:
        model.compile()
    k = len(model.params)
    truth = args.truth if args.truth is not None else ([0.8, -0.8] + [0.0] * k)[:k]
    theta_true = torch.tensor(truth, dtype=model.dtype, device=model.device)
    x = model.sample(args.events, theta_true, seed=args.seed)  # N d
    bounds = torch.as_tensor(model.theta_bounds).tolist()
    priors = {
        p: dist.Uniform(*torch.tensor(b, dtype=model.dtype)) for p, b in zip(model.params, bounds, strict=True)
    }
    cuda = torch.device(model.device).type == "cuda"
    compile_s = None
    if args.compile:  # the shapes NUTS evaluates: one θ, with and without its gradient
        start = time.perf_counter()
        prepared = model.prepare(x)
        theta = theta_true.clone().requires_grad_()
        torch.autograd.grad(prepared.log_prob(theta).sum(), theta)
        with torch.no_grad():
            prepared.log_prob(theta_true)
        compile_s = time.perf_counter() - start

    nuts = timed_nuts(
        model, x, priors, num_samples=args.draws, warmup_steps=args.warmup, num_chains=args.chains,
        seed=args.seed, progress=args.progress,
    )  # fmt: skip
    prepared, redone = fast_path_timing(model, x, theta_true, args.repeats, cuda)
    floor = sampler_floor(priors, nuts["posterior_mean"], nuts["posterior_sd"], chains=args.chains,
                          warmup=args.warmup, draws=args.draws, seed=args.seed)  # fmt: skip
    result = {
        "machine": machine_info(model.device),
        "model": _describe(model) + (f"; compiled ({compile_s:.1f} s, before the timings)" if args.compile else ""),
        "events": args.events,
        "chains": args.chains,
        "warmup": args.warmup,
        "draws": args.draws,
        **nuts,
        "log_prob_grad_prepared_ms": 1e3 * prepared,
        "log_prob_grad_redone_ms": 1e3 * redone,
        "fast_path_speedup": redone / prepared,
        **floor,
    }
    _print(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def _print(r: dict) -> None:
    print("machine: " + " | ".join(f"{k} {v}" for k, v in r["machine"].items()))
    print(f"model: {r['model']}")
    print(
        f"{r['events']} events, {r['chains']} chains × ({r['warmup']} warm-up + {r['draws']} draws), "
        "run one after the other"
    )
    rows = [
        ("wall time, all chains [s]", f"{r['wall_s']:.1f}"),
        ("gradient evaluations", f"{r['grad_evals']}"),
        ("gradient evaluations / s", f"{r['grad_evals_per_s']:.0f}"),
    ]
    for p, e in r["bulk_ess"].items():
        rows.append((f"bulk ESS {p} (per s of wall time)", f"{e:.0f} ({r['bulk_ess_per_s'][p]:.1f}/s)"))
    rows += [
        ("time in log_prob, forward + backward", f"{100 * r['log_prob_share']:.0f} %"),
        ("  of which forward", f"{100 * r['log_prob_forward_share']:.0f} %"),
        ("log_prob + grad, prepared events [ms]", f"{r['log_prob_grad_prepared_ms']:.3f}"),
        ("log_prob + grad, events redone [ms]", f"{r['log_prob_grad_redone_ms']:.3f}"),
        ("fast-path speed-up", f"{r['fast_path_speedup']:.2f}×"),
        ("sampler alone, free likelihood [ms/gradient]", f"{r['floor_ms_per_grad']:.3f}"),
        ("  total per gradient above [ms]", f"{1e3 * r['sampling_s'] / r['grad_evals']:.3f}"),
    ]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b:>16}")


if __name__ == "__main__":
    main()
