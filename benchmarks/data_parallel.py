"""Data-parallel training on CPU: one process against ``torchrun`` with N gloo processes, same data and seed.

Each run trains the same network on the same toy grid for ``--epochs`` epochs with one torch
thread per process and reports the median time per epoch after the first and the validation
loss (summed over the factor networks) at the end. Single-process runs with other seeds of the
initial weights give the run-to-run noise the data-parallel result is compared with.

Usage::

    python benchmarks/data_parallel.py [--per-point 2000] [--epochs 4] [--batch-size 500] [--processes 2]

(The script starts its torchrun runs itself; ``--worker`` is how it runs inside them.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder heads sys.path, and benchmarks/profile.py would shadow the
# standard library's `profile` module, which torch imports (via cProfile)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402

import gmmpyro  # noqa: E402
from gmmpyro.data_parallel import is_main_process  # noqa: E402
from gmmpyro.toy import ToyModel, paper_config, paper_training_config  # noqa: E402


def train(args: argparse.Namespace, seed: int) -> dict:
    """Train the paper's network on ``args.per_point`` events per grid point; times and final loss."""
    torch.set_num_threads(1)
    toy = ToyModel()
    x, theta = toy.grid_dataset(args.per_point, seed=1)
    torch.manual_seed(seed)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=paper_config())
    tic = time.perf_counter()
    history = model.fit(
        x.float(),
        theta.float(),
        config=paper_training_config(batch_size=args.batch_size, max_epochs=args.epochs, seed=seed),
        progress=False,
    )
    return {
        "epoch_time": statistics.median(history.epoch_time[1:]),
        "val_loss": sum(history.val_loss[-1]),
        "wall": time.perf_counter() - tic,
    }


def data_parallel_run(args: argparse.Namespace) -> dict:
    """The same training under ``torchrun --nproc-per-node args.processes``; rank 0's numbers."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        sizes = [f"--per-point={args.per_point}", f"--epochs={args.epochs}", f"--batch-size={args.batch_size}"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.processes}"]
        command = [*torchrun, __file__, "--worker", str(out), *sizes]
        subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-point", type=int, default=2000, help="training events per grid point (49 points)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--noise-seeds", type=int, default=2, help="extra single-process runs with other seeds")
    parser.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = train(args, seed=0)
        if is_main_process():
            Path(args.worker).write_text(json.dumps(result))
        return

    single = train(args, seed=0)
    parallel = data_parallel_run(args)
    noise = [train(args, seed=s)["val_loss"] for s in range(1, 1 + args.noise_seeds)]
    spread = statistics.stdev([single["val_loss"], *noise])
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"load before {os.getloadavg()[0]:.2f} | paper network, {49 * args.per_point} events, "
          f"batch {args.batch_size}, {args.epochs} epochs, 1 thread per process")  # fmt: skip
    print("| run | s/epoch | speed-up | validation loss | |Δ| to 1 process |")
    print("|---|---:|---:|---:|---:|")
    print(f"| 1 process | {single['epoch_time']:.2f} | 1.00× | {single['val_loss']:.5f} | — |")
    print(
        f"| {args.processes} processes (gloo) | {parallel['epoch_time']:.2f} | "
        f"{single['epoch_time'] / parallel['epoch_time']:.2f}× | {parallel['val_loss']:.5f} | "
        f"{abs(parallel['val_loss'] - single['val_loss']):.2e} |"
    )
    print(f"run-to-run noise of 1 process (sd over initial-weight seeds 0–{args.noise_seeds}): {spread:.2e}")


if __name__ == "__main__":
    main()
