#!/usr/bin/env bash
# CUDA check in under five minutes: the tests marked `gpu` and the distribution battery on CUDA, then a θ-cheap design's
# log_prob + gradient, 61 x 61 scan and NUTS speed on CUDA at 400, 10 000 and 100 000 events, the batched
# sampler with 64 and 1024 chains and the default sampler (tempered SMC) at 400 events.
#
# Run from anywhere with the project's Python (the virtual environment's, or $PYTHON):
#
#   bash benchmarks/gpu_check.sh
#   PYTHON=.venv/bin/python MODEL=toy_lowrank.gmm bash benchmarks/gpu_check.sh
#   DESIGN=amplitudes bash benchmarks/gpu_check.sh
#   DESIGN=amplitudes COMPILE=1 bash benchmarks/gpu_check.sh     # DensityModel.compile() (Triton kernels)
#   DEVICE=cpu EVENTS="100 300" GRID=5 CHAINS=1 WARMUP=10 DRAWS=10 BATCHED_CHAINS=4 SMC_PARTICLES=50 SKIP_TESTS=1 \
#       bash benchmarks/gpu_check.sh
#
# Settings (environment): MODEL, a saved DensityModel (default: a fresh one of DESIGN, "lowrank" or
# "amplitudes" (default lowrank), fitted for one epoch; its timings hold, its ESS does not); DEVICE (cuda); DTYPE (float32); EVENTS
# ("400 10000 100000"); GRID (61); CHAINS, WARMUP, DRAWS (2, 300, 300); BATCHED_CHAINS, chain
# counts of the batched sampler at the first EVENTS value ("64 1024"); SMC_PARTICLES, particles of each of
# CHAINS SMC runs there (1000); THREADS (1); SKIP_TESTS (0); COMPILE (0; 1: DensityModel.compile(), the
# "amplitudes" design only, compiled within the first timings). Prints the machine, pytest's output and one Markdown table; exits with
# pytest's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
export DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-float32} EVENTS=${EVENTS:-400 10000 100000} GRID=${GRID:-61}
export CHAINS=${CHAINS:-2} WARMUP=${WARMUP:-300} DRAWS=${DRAWS:-300} THREADS=${THREADS:-1} MODEL=${MODEL:-}
export DESIGN=${DESIGN:-lowrank} COMPILE=${COMPILE:-0}
export BATCHED_CHAINS=${BATCHED_CHAINS:-64 1024} SMC_PARTICLES=${SMC_PARTICLES:-1000}
SKIP_TESTS=${SKIP_TESTS:-0}

echo "machine: $(uname -srm)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
else
    echo "nvidia-smi: not found"
fi

status=0
TESTS="skipped (SKIP_TESTS=1)"
if [[ $SKIP_TESTS != 1 ]]; then
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    start=$SECONDS
    set +e
    "$PYTHON" -m pytest -q -p no:cacheprovider --device "$DEVICE" --dtype "$DTYPE" tests/test_gpu.py tests/test_distribution.py 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    summary=$(grep -v '^\s*$' "$log" | tail -n 1)
    TESTS="$summary, exit status $status, $((SECONDS - start)) s"
fi
export TESTS

"$PYTHON" -P - <<'PY'
import os
import sys
import time
import warnings
from dataclasses import replace

sys.path.append(os.path.abspath("benchmarks"))  # appended: benchmarks/profile.py must not shadow `profile`
import arviz as az  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from speed import gmmpyro_model, grid_seconds, log_prob_grad_ms, nuts_numbers, scan_seconds, toy_events  # noqa: E402

from gmmpyro.inference.bayes import sample_posterior  # noqa: E402
from gmmpyro.inference.smc import distinct_lineages  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config  # noqa: E402

env = os.environ
torch.set_num_threads(int(env["THREADS"]))
device, dtype = torch.device(env["DEVICE"]), getattr(torch, env["DTYPE"])
grid, chains, warmup, draws = (int(env[k]) for k in ("GRID", "CHAINS", "WARMUP", "DRAWS"))
x_train, theta_train = ToyModel().grid_dataset(200, seed=0)
network = replace(paper_config(), design=env["DESIGN"], rank=16)
tic = time.perf_counter()
model, origin = gmmpyro_model(env["MODEL"] or None, network, (x_train.to(dtype), theta_train.to(dtype)),
                              device=device, dtype=dtype, seed=0)  # fmt: skip
if env["COMPILE"] == "1":
    model.compile()
rows = [("pytest tests/test_gpu.py tests/test_distribution.py", env["TESTS"])]
name = f"{model.config.design}{', compiled' if env['COMPILE'] == '1' else ''} ({env['DTYPE']})"
with warnings.catch_warnings():  # an untrained model's fits and chains warn; the numbers are what counts here
    warnings.simplefilter("ignore")
    for n in (int(v) for v in env["EVENTS"].split()):
        x = toy_events(n, 1, device, dtype)
        rows.append((f"{name}, {n} events: log_prob+∂θ", f"{log_prob_grad_ms(model, x, 20):.3g} ms"))
        rows.append((
            f"{name}, {n} events: {grid}×{grid} scan",
            f"{scan_seconds(model, x, grid):.3g} s (grid alone {grid_seconds(model, x, grid):.3g} s)",
        ))
        r = nuts_numbers(model, x, chains=chains, warmup=warmup, draws=draws, seed=0)
        rows.append((
            f"{name}, {n} events: NUTS {chains} × ({warmup} + {draws})",
            f"{r['wall_s']:.3g} s, {r['grad_evals_per_s']:.0f} grad evals/s, bulk ESS/s (min) "
            f"{r['min_bulk_ess_per_s']:.3g}, {100 * r['log_prob_share']:.0f} % in log_prob",
        ))
    # the batched sampler: K chains advanced together, priors on the device so the whole state stays there
    n_first = int(env["EVENTS"].split()[0])
    x = toy_events(n_first, 1, device, dtype)
    low, high = (torch.tensor(v, dtype=dtype, device=device) for v in (-1.5, 1.5))
    priors = {p: dist.Uniform(low, high) for p in model.params}
    for chains_k in (int(v) for v in env["BATCHED_CHAINS"].split()):
        tic_k = time.perf_counter()
        idata = sample_posterior(model, x, priors, sampler="batched", num_chains=chains_k, num_samples=draws,
                                 warmup_steps=warmup, seed=0, progress=False, log_likelihood=False)  # fmt: skip
        wall = time.perf_counter() - tic_k
        ess = min(float(az.ess(idata["posterior"][p].values, method="bulk")) for p in model.params)
        rows.append((
            f"{name}, {n_first} events: batched HMC {chains_k} × ({warmup} + {draws})",
            f"{wall:.3g} s, {idata['posterior'].attrs['n_grad_evals'] / wall:.0f} chain-gradients/s, "
            f"bulk ESS/s (min) {ess / wall:.3g}",
        ))
    # the default sampler: CHAINS tempered-SMC runs, every particle of a step scored in one batch
    particles = int(env["SMC_PARTICLES"])
    tic_k = time.perf_counter()
    idata = sample_posterior(model, x, priors, num_chains=chains, num_samples=particles, seed=0, progress=False,
                             log_likelihood=False)  # fmt: skip
    wall = time.perf_counter() - tic_k
    evals = sum(idata["posterior"].attrs["n_likelihood_evals"])
    lineages = sum(distinct_lineages(e) for e in idata["sample_stats"]["lineage"].values)
    rows.append((
        f"{name}, {n_first} events: SMC {chains} × {particles} particles",
        f"{wall:.3g} s, {evals / wall:.0f} particle evaluations/s, {lineages:.0f} distinct lineages (ESS ≥)",
    ))
print()
print(f"torch {torch.__version__}, device {device}"
      + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
print(f"model: {origin}" + ("; timings hold, ESS depends on training" if origin.startswith("untrained") else ""))
print(f"measurements: {time.perf_counter() - tic:.0f} s")
print()
print("| check | result |")
print("|---|---|")
for check, result in rows:
    print(f"| {check} | {result} |")
PY

exit "$status"
