"""Samplers side by side: Pyro NUTS, batched ChEES-HMC chains and tempered SMC on three posteriors.

One run, one machine, one table per case, each with the speed-up against Pyro NUTS measured
in the same run. Columns of every table:

* wall time of the row (warm-up and starting points included);
* bulk ESS per second of wall time, the smallest over the parameters (rank-normalised,
  ArviZ ``az.ess(method="bulk")``, chains as ArviZ chains). SMC's particles are not a Markov
  chain: in case a its ESS is ``runs · sd² / Var(the runs' means)`` (``sd`` from the grid;
  at most the particles; noisy with few runs, so give case a several, e.g. ``--smc-a 8:250``);
  in b and c, and as a
  column in a, the number of distinct lineages ``1 / Σ_e (n_e / n)²`` (``n_e``
  particles descending from prior draw ``e``) of each run, summed over the runs;
* evaluations: gradients of the log density at one parameter point (NUTS' leapfrog steps,
  the batched chains' steps times the chains), or for SMC the likelihood evaluations of one
  particle, gradients included;
* the speed-up in ESS/s against NUTS (> 1: faster), and accuracy columns per case.

Cases:

a. **the toy posterior**: 400 events of the exact toy at (cx, cy) = (0.8, -0.8), priors
   Uniform(-1.5, 1.5), the density a saved model (``--model``; the exact toy when there is
   none, or with ``--model exact``). All rows through :func:`gmmpyro.bayes.sample_posterior`
   (``sampler="nuts" | "batched" | "smc"``). Accuracy: ``|Δmean| / sd`` of cx and cy and the
   ratio of the sampled sd to the exact one, against the same density tabulated on a grid
   (41² over the prior, then 61² over ±8 sd of the coarse marginals);
b. **separated modes of known weight**: a 2-D target built directly
   (:class:`gmmpyro.inference.target.Target`), prior Uniform(-6, 6)², likelihood a mixture of
   2 (or 4) Gaussians; mode ``j``'s posterior weight is ``w_j m_j / Σ w m`` with ``m_j`` its
   mass inside the prior's box (normal CDFs, exact). A draw belongs to the mode nearest in
   units of that mode's sd; a mode is found if ≥ 1 % of all draws lie within 3 sd of its
   centre. Accuracy: the weight of the 0.3 mode, its Monte Carlo standard error (MCMC:
   ``az.mcse`` of the indicator; SMC: the spread of the independent runs / √runs), the
   deviation in standard errors, the modes found, and SMC's ``log Z`` against the exact one
   (± the runs' own standard errors, ``SMCResult.log_evidence_se``, combined);
c. **Neal's funnel**: ``v ~ N(0, 3²)``, ``x_i ~ N(0, e^v)`` (sd ``e^{v/2}``), ``i < dim``. The
   prior of ``v`` is its funnel marginal, each ``x_i`` gets a placeholder prior N(0, 1) that
   the log-likelihood divides out again (``log N(x_i; 0, e^{v/2}) − log N(x_i; 0, 1)``), so the
   posterior is the funnel exactly. Accuracy: mean and sd of ``v`` against (0, 3), divergent
   transitions after warm-up as a fraction of the draws.

In b and c NUTS is Pyro's ``MCMC(NUTS(potential_fn=...))`` on the same unconstrained
log density the batched samplers move on (dense mass matrix, target acceptance 0.8), each
chain started at a prior draw; the batched chains (:func:`~gmmpyro.inference.chees.run_batched_hmc`)
start from likelihood-resampled prior draws (:func:`~gmmpyro.inference.batched_runs.resampled_starts`),
SMC is :func:`~gmmpyro.inference.smc.run_smc`. Every row runs in this process, one after the
other; all seeds derive from ``--seed``.

Row sizes are ``--batched-a K:WARMUP:DRAWS ...`` and ``--smc-a RUNS:PARTICLES`` (likewise
``-b``/``-c``): a learned density costs the same per parameter point whether it is scored
alone or in a batch (on one CPU thread), so the defaults of case a are smaller than those of
b and c.

Examples::

    OMP_NUM_THREADS=1 python -P benchmarks/samplers.py                 # all cases, ~12 min
    OMP_NUM_THREADS=1 python -P benchmarks/samplers.py --quick         # smoke test, ~3 min
    python -P benchmarks/samplers.py --cases a --model exact \
        --batched-a 4:200:200 64:200:200 1024:200:200 --smc-a 4:2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/profile.py would shadow the standard library's profile module: keep this folder last
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import arviz as az  # noqa: E402  (its slow first import is not timed)
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from nuts import machine_info  # noqa: E402  (benchmarks/nuts.py)
from pyro.infer import MCMC, NUTS  # noqa: E402
from speed import load_average, toy_events, warnings_into  # noqa: E402  (benchmarks/speed.py)

import gmmpyro  # noqa: E402
from gmmpyro.inference.batched_runs import resampled_starts  # noqa: E402
from gmmpyro.inference.bayes import BatchedHMCConfig, NUTSConfig, SMCConfig, sample_posterior  # noqa: E402
from gmmpyro.inference.chees import run_batched_hmc  # noqa: E402
from gmmpyro.inference.likelihood import Likelihood  # noqa: E402
from gmmpyro.inference.smc import distinct_lineages, run_smc  # noqa: E402
from gmmpyro.inference.target import Target  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

TRUTH = (0.8, -0.8)
BOUNDS = (-1.5, 1.5)
DEFAULT_MODEL = _HERE / "out" / "toy10k_lowrank16.gmm"
BOX = 6.0  # case b: prior Uniform(-BOX, BOX)²
MODES = {  # case b: (centre, sd, weight) of each Gaussian of the likelihood; the 0.3 one first
    2: [((-1.5, 0.0), 0.3, 0.3), ((1.5, 0.0), 0.5, 0.7)],
    4: [((-1.5, -1.5), 0.3, 0.3), ((1.5, -1.5), 0.5, 0.4), ((-1.5, 1.5), 0.4, 0.2), ((1.5, 1.5), 0.35, 0.1)],
}
FUNNEL_SD_V = 3.0


# ------------------------------------------------------------------------------ measures


def min_bulk_ess(draws: dict[str, np.ndarray]) -> float:
    """The smallest bulk ESS over parameters of ``{name: (chain, draw)}``."""
    return min(float(az.ess(d, method="bulk")) for d in draws.values())


def _row(name: str, wall: float, ess: float, evals: int, **accuracy) -> dict:
    return {"row": name, "wall_s": wall, "ess": ess, "ess_per_s": ess / wall, "evals": int(evals), **accuracy}


def pyro_nuts(target: Target, *, chains: int, warmup: int, draws: int, seed: int) -> dict:
    """Pyro NUTS on ``-target.log_density``, chains one after the other, each from a prior draw.

    Returns draws ``z (chain, draw, k)``, wall seconds, potential evaluations and divergent
    transitions after warm-up.
    """
    calls = [0]

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        calls[0] += 1
        return -target.log_density(params["z"][None])[0]

    out, divergent = [], 0
    start = time.perf_counter()
    for c in range(chains):
        pyro.set_rng_seed(seed + c)
        z0 = target.sample_prior(1, seed=seed + c)[0]  # k
        kernel = NUTS(potential_fn=potential, full_mass=True, target_accept_prob=0.8)
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params={"z": z0}, disable_progbar=True)
        mcmc.run()
        out.append(mcmc.get_samples()["z"].detach())  # D k
        divergent += sum(len(v) for v in mcmc.diagnostics()["divergences"].values())
    return {"z": torch.stack(out), "wall_s": time.perf_counter() - start, "evals": calls[0], "divergent": divergent}


def batched(target: Target, *, chains: int, warmup: int, draws: int, seed: int, config: BatchedHMCConfig) -> dict:
    """:func:`run_batched_hmc` from :func:`resampled_starts`; same keys as :func:`pyro_nuts`."""
    start = time.perf_counter()
    init = resampled_starts(target, chains, max(1000, chains), seed)
    r = run_batched_hmc(target, init, num_samples=draws, warmup_steps=warmup, config=config, seed=seed)
    return {"z": r.z, "wall_s": time.perf_counter() - start, "evals": r.n_grad_evals,
            "divergent": int(r.stats["diverging"].sum())}  # fmt: skip


def batched_configs(args) -> list[tuple[str, BatchedHMCConfig]]:
    """``(row label, config)`` of each ``--criteria`` (labelled when there are several)."""
    criteria = args.criteria or [BatchedHMCConfig().criterion]
    return [(f" ({c})" if len(criteria) > 1 else "", BatchedHMCConfig(criterion=c)) for c in criteria]


def smc_configs(args, particles: int) -> list[tuple[str, SMCConfig]]:
    """``(row label, config)`` of each ``--smc-moves`` (labelled when given)."""
    if not args.smc_moves:
        return [("", SMCConfig(n_particles=particles))]
    return [(f" ({m} × {s} moves)", SMCConfig(n_particles=particles, n_mcmc_steps=m, n_leapfrog=s))
            for m, s in args.smc_moves]  # fmt: skip


def smc(target: Target, *, runs: int, config: SMCConfig, seed: int) -> dict:
    """``runs`` independent :func:`run_smc` runs; draws ``z (run, particle, k)``, lineages and ``log Z``."""
    start = time.perf_counter()
    results = [run_smc(target, config, seed=seed + r) for r in range(runs)]
    return {
        "z": torch.stack([r.z for r in results]),
        "wall_s": time.perf_counter() - start,
        "evals": sum(r.n_likelihood_evals for r in results),
        "lineages": sum(distinct_lineages(r.eve) for r in results),
        "log_z": [r.log_evidence for r in results],
        "log_z_se": [r.log_evidence_se for r in results],
    }


def _named(target: Target, z: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {n: v.double().cpu().numpy() for n, v in target.constrain(z).items()}


def _ess(run: dict, draws: dict[str, np.ndarray]) -> float:
    return run["lineages"] if "lineages" in run else min_bulk_ess(draws)


# ------------------------------------------------------------------------------ case a


def load_density(path: str | None, compile: bool = False):
    """The density of case a and a description: a saved model (``compile``: ``model.compile()``), or the exact toy."""
    if path == "exact" or (path is None and not DEFAULT_MODEL.exists()):
        why = "asked for" if path == "exact" else f"{DEFAULT_MODEL} not found"
        return ToyModel(), f"the exact toy density ({why})"
    path = path or str(DEFAULT_MODEL)
    model = gmmpyro.DensityModel.load(path)
    if compile:
        model.compile()
    return model, f"{path} ({model.config.design} design, {model.dtype}{', compiled' if compile else ''})"


def grid_moments(density, x: torch.Tensor, *, n_coarse: int = 61, n_fine: int = 81) -> dict[str, tuple]:
    """Exact posterior mean and sd of each parameter under Uniform(BOUNDS) priors, on a refined grid.

    A coarse grid over the prior's box, then a fine one over ±8 sd of the coarse marginals
    (clipped to the box); means and sds of the fine marginals by the trapezoid rule.
    """
    lik = Likelihood(density, x)

    def moments(axes: list[torch.Tensor]) -> list[tuple[float, float]]:
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2).to(lik.dtype)  # G k
        with torch.no_grad():
            lp = torch.cat([lik.log_likelihood(c) for c in mesh.split(256)]).double()  # G
        p = (lp - lp.max()).exp().reshape(len(axes[0]), len(axes[1]))
        out = []
        for i, t in enumerate(axes):
            t = t.double()
            m = p.sum(1 - i)
            m = m / torch.trapezoid(m, t)
            mean = torch.trapezoid(t * m, t)
            out.append((float(mean), float(torch.trapezoid((t - mean) ** 2 * m, t).sqrt())))
        return out

    coarse = moments([torch.linspace(*BOUNDS, n_coarse)] * 2)
    fine = [torch.linspace(max(BOUNDS[0], m - 8 * s), min(BOUNDS[1], m + 8 * s), n_fine) for m, s in coarse]
    return dict(zip(density.params, moments(fine), strict=True))


def case_a(args, notes: list[str]) -> dict:
    """Rows of case a through ``sample_posterior``."""
    density, origin = load_density(args.model, args.compile)
    x = toy_events(args.events, 1, torch.device("cpu"), density.dtype)  # N d; the toy at TRUTH, seed 1
    low, high = torch.tensor(BOUNDS, dtype=density.dtype)
    priors = {p: dist.Uniform(low, high) for p in density.params}
    start = time.perf_counter()
    exact = grid_moments(density, x, n_coarse=31 if args.quick else 41, n_fine=41 if args.quick else 61)
    grid_s = time.perf_counter() - start

    def run(name: str, sampler: str, config, chains: int, warmup: int, draws: int) -> dict:
        with warnings_into(notes, f"a, {name}"):
            start = time.perf_counter()
            idata = sample_posterior(density, x, priors, sampler=sampler, config=config, num_chains=chains,
                                     warmup_steps=warmup, num_samples=draws, seed=args.seed, progress=False,
                                     log_likelihood=False)  # fmt: skip
            wall = time.perf_counter() - start
        draws_ = {p: idata["posterior"][p].values for p in density.params}  # C D
        attrs = idata["posterior"].attrs
        accuracy = {}
        if sampler == "smc":
            # independent runs: ESS = runs · sd² / variance of the runs' means (sd from the grid), at most
            # the number of particles (what independent draws would give; more is the estimate's noise)
            ess = min(min(d.size, len(d) * exact[p][1] ** 2 / float(np.var(d.mean(1), ddof=1)))
                      for p, d in draws_.items())  # fmt: skip
            accuracy["lineages"] = sum(distinct_lineages(e) for e in idata["sample_stats"]["lineage"].values)
            evals = sum(np.atleast_1d(attrs["n_likelihood_evals"]))
        else:
            ess, evals = min_bulk_ess(draws_), int(np.sum(attrs["n_grad_evals"]))
        for p, (mean, sd) in exact.items():
            accuracy[f"dmean_{p}"] = abs(float(draws_[p].mean()) - mean) / sd
            accuracy[f"sd_ratio_{p}"] = float(draws_[p].std()) / sd
        return _row(name, wall, ess, evals, **accuracy)

    rows = [run(f"Pyro NUTS, {args.nuts_a[0]} × ({args.nuts_a[1]} + {args.nuts_a[2]})", "nuts", NUTSConfig(),
                *args.nuts_a)]  # fmt: skip
    for (K, w, d), (label, config) in itertools.product(args.batched_a, batched_configs(args)):
        rows.append(run(f"batched{label}, K = {K} × ({w} + {d})", "batched", config, K, w, d))
    runs, n = args.smc_a
    for label, config in smc_configs(args, n):
        rows.append(run(f"SMC{label}, {runs} × {n} particles", "smc", config, runs, n, 1))
    return {"density": origin, "exact": exact, "grid_s": grid_s, "rows": rows}


# ------------------------------------------------------------------------------ case b


def modes_target(n_modes: int) -> tuple[Target, dict]:
    """Case b's target and its exact answers: mode weights and ``log Z``."""
    spec = MODES[n_modes]
    centres = torch.tensor([c for c, _, _ in spec], dtype=torch.float64)  # M 2
    sds = torch.tensor([s for _, s, _ in spec], dtype=torch.float64)  # M
    log_w = torch.tensor([w for _, _, w in spec], dtype=torch.float64).log()  # M

    def log_likelihood(v: dict[str, torch.Tensor]) -> torch.Tensor:
        theta = torch.stack([v["t1"], v["t2"]], -1)  # B 2
        d2 = (theta[..., None, :] - centres).square().sum(-1)  # B M
        return torch.logsumexp(log_w - 0.5 * d2 / sds**2 - 2 * sds.log() - math.log(2 * math.pi), -1)  # B

    prior = dist.Uniform(torch.tensor(-BOX, dtype=torch.float64), torch.tensor(BOX, dtype=torch.float64))
    target = Target({"t1": prior, "t2": prior}, log_likelihood, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)
    inside = (normal.cdf((BOX - centres) / sds[:, None]) - normal.cdf((-BOX - centres) / sds[:, None])).prod(-1)  # M
    mass = log_w.exp() * inside  # M
    exact = {"weights": (mass / mass.sum()).tolist(), "log_z": float(mass.sum().log()) - 2 * math.log(2 * BOX)}
    return target, {"centres": centres, "sds": sds, **exact}


def mode_accuracy(z: torch.Tensor, target: Target, truth: dict, *, smc_runs: bool) -> dict:
    """Weight of mode 0 with its standard error, and the modes found, of draws ``z (chain, draw, 2)``."""
    theta = torch.stack(list(target.constrain(z).values()), -1).double()  # C D 2
    dist_sd = (theta[..., None, :] - truth["centres"]).norm(dim=-1) / truth["sds"]  # C D M
    first = (dist_sd.argmin(-1) == 0).double().cpu().numpy()  # C D
    found = int(((dist_sd <= 3.0).double().mean((0, 1)) >= 0.01).sum())
    weight = float(first.mean())
    if smc_runs:  # independent runs: their spread
        per_run = first.mean(1)
        se = float(per_run.std(ddof=1) / math.sqrt(len(per_run))) if len(per_run) > 1 else math.nan
    else:
        se = float(az.mcse(first, method="mean")) if np.ptp(first) > 0 else 0.0
    true_w = truth["weights"][0]
    dev = (weight - true_w) / se if se > 0 else (0.0 if weight == true_w else math.inf)
    return {"weight": weight, "weight_se": se, "weight_z": dev, "modes_found": found}


def case_b(args, n_modes: int) -> dict:
    target, truth = modes_target(n_modes)
    rows = []
    c, w, d = args.nuts_b
    r = pyro_nuts(target, chains=c, warmup=w, draws=d, seed=args.seed)
    rows.append((f"Pyro NUTS, {c} × ({w} + {d})", r, False))
    for (K, w, d), (label, config) in itertools.product(args.batched_b, batched_configs(args)):
        r = batched(target, chains=K, warmup=w, draws=d, seed=args.seed, config=config)
        rows.append((f"batched{label}, K = {K} × ({w} + {d})", r, False))
    runs, n = args.smc_b
    for label, config in smc_configs(args, n):
        r = smc(target, runs=runs, config=config, seed=args.seed)
        rows.append((f"SMC{label}, {runs} × {n} particles", r, True))
    out = []
    for name, r, is_smc in rows:
        acc = mode_accuracy(r["z"], target, truth, smc_runs=is_smc)
        if is_smc:
            acc["log_z"] = float(np.mean(r["log_z"]))
            acc["log_z_se"] = math.sqrt(float(np.square(r["log_z_se"]).sum())) / len(r["log_z_se"])
        out.append(_row(name, r["wall_s"], _ess(r, _named(target, r["z"])), r["evals"], **acc))
    return {"modes": n_modes, "truth": {k: v for k, v in truth.items() if k in ("weights", "log_z")}, "rows": out}


# ------------------------------------------------------------------------------ case c


def funnel_target(dim: int) -> Target:
    """Neal's funnel in ``dim`` dimensions as a prior on ``v`` and a log-likelihood of the ``x_i``."""
    f64 = {"dtype": torch.float64}
    names = [f"x{i}" for i in range(1, dim)]
    priors = {"v": dist.Normal(torch.tensor(0.0, **f64), torch.tensor(FUNNEL_SD_V, **f64))}
    priors |= {n: dist.Normal(torch.tensor(0.0, **f64), torch.tensor(1.0, **f64)) for n in names}

    def log_likelihood(v: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.stack([v[n] for n in names], -1)  # B dim-1
        # log N(x; 0, e^{v/2}) − log N(x; 0, 1), summed: the placeholder priors divided out
        return (-0.5 * x.square() * (torch.exp(-v["v"])[..., None] - 1.0) - 0.5 * v["v"][..., None]).sum(-1)

    return Target(priors, log_likelihood, dtype=torch.float64)


def case_c(args) -> dict:
    target = funnel_target(args.funnel_dim)
    rows = []
    c, w, d = args.nuts_c
    rows.append((f"Pyro NUTS, {c} × ({w} + {d})", pyro_nuts(target, chains=c, warmup=w, draws=d, seed=args.seed)))
    for (K, w, d), (label, config) in itertools.product(args.batched_c, batched_configs(args)):
        r = batched(target, chains=K, warmup=w, draws=d, seed=args.seed, config=config)
        rows.append((f"batched{label}, K = {K} × ({w} + {d})", r))
    runs, n = args.smc_c
    for label, config in smc_configs(args, n):
        rows.append((f"SMC{label}, {runs} × {n} particles", smc(target, runs=runs, config=config, seed=args.seed)))
    out = []
    for name, r in rows:
        named = _named(target, r["z"])
        v = named["v"]
        ess = r["lineages"] if "lineages" in r else float(az.ess(v, method="bulk"))
        divergent = r["divergent"] / v.size if "divergent" in r else None
        out.append(_row(name, r["wall_s"], ess, r["evals"], v_mean=float(v.mean()), v_sd=float(v.std()),
                        divergent=divergent))  # fmt: skip
    return {"dim": args.funnel_dim, "rows": out}


# ------------------------------------------------------------------------------ output


def _fmt(value, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _speedup(row: dict, rows: list[dict]) -> str:
    return _fmt(row["ess_per_s"] / rows[0]["ess_per_s"], ".2f") if rows[0]["ess_per_s"] > 0 else "—"


def _common(r: dict, rows: list[dict]) -> str:
    ess = f"{r['ess']:.0f} | {r['ess_per_s']:.3g}"
    return f"| {r['row']} | {r['wall_s']:.1f} | {ess} | {r['evals']:,} | {_speedup(r, rows)} "


def print_a(res: dict) -> None:
    exact = ", ".join(f"{p} {m:.4f} ± {s:.4f}" for p, (m, s) in res["exact"].items())
    print(f"### a. Toy posterior, density: {res['density']}")
    print(f"exact (grid, {res['grid_s']:.0f} s): {exact}")
    print()
    print("| sampler | wall [s] | ESS (min) | ESS/s | θ-gradients | speed-up vs NUTS "
          "| \\|Δmean\\|/sd cx / cy | sd / exact sd cx / cy | SMC lineages |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(_common(r, res["rows"]) + f"| {r['dmean_cx']:.2f} / {r['dmean_cy']:.2f} "
              f"| {r['sd_ratio_cx']:.2f} / {r['sd_ratio_cy']:.2f} | {_fmt(r.get('lineages'), '.0f')} |")  # fmt: skip


def print_b(res: dict) -> None:
    w = res["truth"]["weights"]
    print(f"### b. {res['modes']} separated modes, exact weights {', '.join(f'{v:.4f}' for v in w)}; "
          f"exact log Z = {res['truth']['log_z']:.4f}")  # fmt: skip
    print()
    print("| sampler | wall [s] | ESS (min) | ESS/s | evaluations | speed-up vs NUTS "
          f"| weight of the {w[0]:.4f} mode ± SE | deviation [SE] | modes found | log Z − exact |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        log_z = f"{r['log_z'] - res['truth']['log_z']:+.3f} ± {r['log_z_se']:.3f}" if "log_z" in r else "—"
        print(_common(r, res["rows"]) + f"| {r['weight']:.3f} ± {r['weight_se']:.3f} | {_fmt(r['weight_z'], '+.1f')} "
              f"| {r['modes_found']} / {res['modes']} | {log_z} |")  # fmt: skip


def print_c(res: dict) -> None:
    print(f"### c. Neal's funnel, {res['dim']}-D: v ~ N(0, 3²), x_i ~ N(0, e^v)")
    print()
    print("| sampler | wall [s] | ESS of v | ESS/s of v | evaluations | speed-up vs NUTS | divergent "
          "| mean of v (0) | sd of v (3) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        div = _fmt(None if r["divergent"] is None else 100 * r["divergent"], ".1f")
        print(_common(r, res["rows"]) + f"| {div}{'' if div == '—' else ' %'} | {r['v_mean']:+.2f} "
              f"| {r['v_sd']:.2f} |")  # fmt: skip


def _triple(text: str) -> tuple[int, int, int]:
    """``"K:WARMUP:DRAWS"`` (or chains for NUTS) as integers."""
    parts = tuple(int(p) for p in text.split(":"))
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected CHAINS:WARMUP:DRAWS with positive integers, got {text!r}")
    return parts


def _pair(text: str) -> tuple[int, int]:
    """``"RUNS:PARTICLES"`` as integers."""
    parts = tuple(int(p) for p in text.split(":"))
    if len(parts) != 2 or parts[0] < 1 or parts[1] < 2:
        raise argparse.ArgumentTypeError(f"expected RUNS:PARTICLES, got {text!r}")
    return parts


def _moves(text: str) -> tuple[int, int]:
    """``"MOVES:LEAPFROG"`` as positive integers."""
    parts = tuple(int(p) for p in text.split(":"))
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected MOVES:LEAPFROG with positive integers, got {text!r}")
    return parts


_SIZES: dict[str, tuple[object, object]] = {  # full, quick
    "nuts_a": ((4, 250, 250), (2, 50, 50)),
    "batched_a": ([(4, 100, 100), (64, 50, 30)], [(4, 50, 20), (8, 50, 20)]),
    "smc_a": ((8, 64), (2, 16)),
    "nuts_b": ((4, 500, 500), (4, 200, 200)),
    "batched_b": ([(64, 500, 500)], [(64, 100, 100)]),
    "smc_b": ((4, 2000), (2, 500)),
    "nuts_c": ((4, 250, 250), (2, 100, 100)),
    "batched_c": ([(64, 500, 500)], [(64, 100, 100)]),
    "smc_c": ((4, 2000), (2, 500)),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=("a", "b", "c"), default=["a", "b", "c"])
    parser.add_argument("--model", help=f"case a's density: a saved DensityModel, or 'exact' (default {DEFAULT_MODEL})")
    parser.add_argument("--events", type=int, default=400, help="observed events of case a")
    parser.add_argument("--compile", action="store_true", help="case a: DensityModel.compile() (compiles in the runs)")
    parser.add_argument("--modes", type=int, nargs="+", choices=tuple(MODES), default=[2, 4], help="case b")
    parser.add_argument("--funnel-dim", type=int, default=5, help="case c: dimensions, v and dim - 1 x's")
    for case in "abc":
        parser.add_argument(f"--nuts-{case}", type=_triple, metavar="C:W:D", help="NUTS chains:warmup:draws")
        parser.add_argument(f"--batched-{case}", type=_triple, nargs="+", metavar="K:W:D", help="batched rows")
        parser.add_argument(f"--smc-{case}", type=_pair, metavar="R:N", help="SMC runs:particles")
    parser.add_argument("--smc-moves", type=_moves, nargs="+", metavar="M:L", default=None,
                        help="SMC rows with M moves of L leapfrog steps each (default: SMCConfig's)")
    parser.add_argument("--criteria", nargs="+", choices=("chees", "chees_per_gradient"), default=None,
                        help=f"trajectory criteria of the batched rows (default {BatchedHMCConfig().criterion})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    for key, (full, quick) in _SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    torch.set_num_threads(args.threads)
    load_start, start = load_average(), time.perf_counter()
    notes: list[str] = []
    results: dict[str, object] = {}
    steps: dict[str, Callable[[], object]] = {
        "a": lambda: case_a(args, notes),
        "b": lambda: [case_b(args, m) for m in args.modes],
        "c": lambda: case_c(args),
    }
    for case in args.cases:
        tic = time.perf_counter()
        results[case] = steps[case]()
        print(f"case {case}: {time.perf_counter() - tic:.0f} s", file=sys.stderr, flush=True)
    total, load_end = time.perf_counter() - start, load_average()

    machine = {**machine_info("cpu"), "gmmpyro": gmmpyro.__version__, "arviz": az.__version__}
    print("machine: " + " | ".join(f"{k} {v}" for k, v in machine.items()))
    load = " → ".join(", ".join(f"{v:.2f}" for v in a) for a in (load_start, load_end) if a is not None)
    if load:
        print(f"load average (1, 5, 15 min), start → end: {load}")
    print(f"total {total:.0f} s; seed {args.seed}; ESS/s per second of wall time; SMC's ESS: in a, runs · sd² / "
          "variance of the runs' means; in b and c, distinct lineages 1/Σ_e(n_e/n)² per run, summed over runs "
          "(a lower bound)")  # fmt: skip
    print()
    printers = {"a": print_a, "b": lambda rs: [print_b(r) or print() for r in rs], "c": print_c}
    for case, res in results.items():
        printers[case](res)
        print()
    for note in notes:
        print(f"warning: {note}")
    out = {"machine": machine, "load_average": [load_start, load_end], "total_s": total,
           "args": {k: v for k, v in vars(args).items()}, "results": results, "notes": notes}  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
