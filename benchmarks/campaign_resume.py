"""A large coverage campaign that loses a worker, is killed, and resumes: no toy lost or counted twice.

The toy of SPEC §6 with the nuisance ``nu`` (``x3_shift = 0.3``, unit Gaussian constraint,
global observable redrawn per toy) profiled, its exact density as the model, 400 events per
toy, coverage of the (cx, cy) contour and of each interval:

1. the campaign starts on a local cluster of ``--workers`` processes writing to a Parquet
   folder; after ``--kill-worker-after`` seconds one worker process is killed (its nanny starts
   a new one and Dask reruns its tasks); after ``--kill-after`` seconds the whole campaign
   process is killed;
2. the same call runs again and completes the campaign from what the folder holds;
3. a single worker runs the first ``--reference-toys`` toys afresh: toy ``i`` depends only on
   ``seed + i``, so their rows must equal the campaign's.

Usage::

    pip install "gmmpyro[distributed]"
    python benchmarks/campaign_resume.py [--toys 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

# run as a script, this file's folder heads sys.path, and benchmarks/profile.py would shadow the
# standard library's `profile` module, which torch imports (via cProfile)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gmmpyro.campaigns import coverage  # noqa: E402
from gmmpyro.exceptions import GmmpyroWarning  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

TRUTH = [0.8, -0.8, 0.0]


def campaign(n_toys: int, out: Path, workers: int, kill_worker_after: float | None = None):
    """The coverage campaign on a fresh local cluster; optionally kill one worker process mid-way."""
    import dask
    from distributed import Client, LocalCluster

    warnings.simplefilter("ignore", GmmpyroWarning)  # out-of-range MLEs of extreme pseudo-data are expected
    # as a campaign's own cluster: workers without Dask's malloc trimming (see "Scaling out")
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        if kill_worker_after is not None:
            victim = next(iter(client.scheduler_info()["workers"]))
            timer = threading.Timer(kill_worker_after, _kill, (client, victim))
            timer.start()
        return coverage(
            ToyModel(x3_shift=0.3), TRUTH, n_toys, 400, profile=["nu"],
            constraints={"nu": torch.distributions.Normal(0.0, 1.0)}, client=client, out=out, progress=False,
        )  # fmt: skip


def _kill(client, worker: str) -> None:
    """End the process of ``worker`` at once; its nanny starts another."""
    try:
        client.run(os._exit, 1, workers=[worker])
    except Exception as error:  # the worker dies before it can answer
        print(f"killed worker {worker} ({type(error).__name__})", flush=True)


def stored_toys(out: Path) -> np.ndarray:
    import pyarrow.dataset as ds

    if not out.exists():
        return np.array([], dtype=int)
    return ds.dataset(out, format="parquet").to_table(columns=["toy"]).column("toy").to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toys", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kill-worker-after", type=float, default=60.0, help="seconds")
    parser.add_argument("--kill-after", type=float, default=150.0, help="seconds")
    parser.add_argument("--reference-toys", type=int, default=100)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "first":  # the campaign process that gets killed
        campaign(args.toys, Path(args.out), args.workers, args.kill_worker_after)
        return

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "campaign"
        tic = time.perf_counter()
        command = [sys.executable, __file__, "--phase", "first", "--out", str(out), f"--toys={args.toys}",
                   f"--workers={args.workers}", f"--kill-worker-after={args.kill_worker_after}"]  # fmt: skip
        first = subprocess.Popen(command, start_new_session=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        try:
            first.wait(timeout=args.kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)  # the campaign and its cluster, without warning
            first.wait()
        before = stored_toys(out)
        first_time = time.perf_counter() - tic
        tic = time.perf_counter()
        result = campaign(args.toys, out, args.workers)
        second_time = time.perf_counter() - tic
        after = stored_toys(out)
        reference = campaign(args.reference_toys, Path(folder) / "reference", 1)

    toys = result.toys
    same = {
        name: bool(np.array_equal(toys[name][: args.reference_toys], reference.toys[name], equal_nan=name != "status"))
        for name in ("q_joint", "q_cx", "q_cy", "glob_nu", "status")
    }
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"{args.workers} workers, 1 thread each")  # fmt: skip
    print(f"first run: {first_time:.0f} s, one worker killed after {args.kill_worker_after:.0f} s, the campaign "
          f"killed after {args.kill_after:.0f} s with {len(before)} toys stored "
          f"({len(np.unique(before))} distinct)")  # fmt: skip
    print(f"second run: {second_time:.0f} s; stored rows {len(after)}, distinct toys {len(np.unique(after))}, "
          f"expected {args.toys}")  # fmt: skip
    print(f"toys done {result.n_done}, unconverged {result.n_unconverged}, failed {result.n_failed}")
    print(result)
    print(f"first {args.reference_toys} toys rerun on 1 worker: rows identical: {same}")


if __name__ == "__main__":
    main()
