"""Peak memory of training from Parquet: streamed window by window against loaded into memory.

Writes a Parquet file of ``--rows`` toy events (row groups of ``--row-group`` rows), then trains
one epoch on it twice, each in a fresh process: streamed (``gmmpyro.ParquetEvents`` with
``--window`` rows per window) and loaded (read into memory, then ``fit(x, theta)``). Each process
reports its peak resident set size and its time.

Usage::

    python benchmarks/streaming.py [--rows 2000000] [--window 200000] [--row-group 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder heads sys.path, and benchmarks/profile.py would shadow the
# standard library's `profile` module, which torch imports (via cProfile)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gmmpyro  # noqa: E402
from gmmpyro.toy import ToyModel  # noqa: E402

NETWORK = gmmpyro.NetworkConfig(n_gauss=8, A1=32, B1=32, B2=12, C=2, D=2, design="lowrank", rank=8)


def write_events(path: Path, rows: int, row_group: int, points_per_group: int = 50) -> None:
    """``rows`` toy events, each row group at ``points_per_group`` θ drawn uniformly; never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    toy = ToyModel()
    generator = torch.Generator().manual_seed(0)
    schema = pa.schema([(name, pa.float64()) for name in ("x0", "x1", "x2", "x3", "cx", "cy")])
    with pq.ParquetWriter(path, schema) as out:
        for i, start in enumerate(range(0, rows, row_group)):
            n = min(row_group, rows - start)
            points = torch.rand(points_per_group, 2, generator=generator, dtype=torch.float64) * 3 - 1.5
            counts = [len(c) for c in np.array_split(np.arange(n), points_per_group)]
            seeds = range(i * points_per_group, (i + 1) * points_per_group)
            x = torch.cat([toy.sample(c, p, seed=s) for c, p, s in zip(counts, points, seeds, strict=True)])
            theta = torch.repeat_interleave(points, torch.tensor(counts), dim=0)
            columns = {f"x{j}": x[:, j].numpy() for j in range(4)}
            out.write_table(pa.table(columns | {"cx": theta[:, 0].numpy(), "cy": theta[:, 1].numpy()}))


def train(path: Path, mode: str, window: int) -> dict:
    torch.set_num_threads(1)
    toy = ToyModel()
    torch.manual_seed(0)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=NETWORK)
    config = gmmpyro.TrainingConfig(batch_size=2000, learning_rate=3e-3, max_epochs=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    if mode == "streamed":
        model.fit(gmmpyro.ParquetEvents(path, window_rows=window, reference_rows=window), config=config, progress=False)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        x = torch.from_numpy(np.stack([table.column(f"x{j}").to_numpy() for j in range(4)], -1))
        theta = torch.from_numpy(np.stack([table.column(n).to_numpy() for n in ("cx", "cy")], -1))
        del table
        model.fit(x, theta, config=config, progress=False)
    return {
        "seconds": time.perf_counter() - tic,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "before_mb": before,
        "val_loss": sum(model.history.val_loss[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--window", type=int, default=200_000)
    parser.add_argument("--row-group", type=int, default=50_000)
    parser.add_argument("--worker", nargs=2, metavar=("FILE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train(Path(args.worker[0]), args.worker[1], args.window)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.parquet"
        write_events(path, args.rows, args.row_group)
        size = path.stat().st_size / 2**20
        results = {}
        for mode in ("streamed", "loaded"):
            command = [sys.executable, __file__, "--worker", str(path), mode, f"--window={args.window}"]
            env = os.environ | {"OMP_NUM_THREADS": "1"}
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"machine: {platform.platform()} | {os.cpu_count()} CPUs | torch {torch.__version__} | 1 thread")
    print(f"{args.rows} events, file {size:.0f} MiB, row groups of {args.row_group}, window {args.window} rows; "
          f"one epoch, batch 2000")  # fmt: skip
    print("| training | peak RSS (MiB) | of it before training | time (s) | validation loss |")
    print("|---|---:|---:|---:|---:|")
    for mode, r in results.items():
        print(f"| {mode} | {r['peak_rss_mb']:.0f} | {r['before_mb']:.0f} | {r['seconds']:.1f} | {r['val_loss']:.4f} |")


if __name__ == "__main__":
    main()
