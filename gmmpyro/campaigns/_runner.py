"""Toys as Dask tasks: a cluster when none is given, the campaign sent once, batches as they complete.

:func:`run_campaign` is what every campaign calls: stored toys read back, the others run and
stored. ``distributed`` (and ``pyarrow``, for a store) is imported when a campaign runs, not
with this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._progress import progress_bar
from ._optional import require

__all__ = ["default_batch_size", "local_client", "open_client", "run_batches", "run_campaign"]

_TASKS_PER_THREAD = 4  # enough tasks per worker thread to balance uneven toys, ...
_MAX_BATCH = 50  # ... few enough toys per task to lose little when a worker dies


def _one_torch_thread(distributed) -> Any:
    """A worker plugin: torch on one thread in each worker of a cluster a campaign starts (one task per core).

    A plugin, not a one-off ``client.run``, so that a worker the nanny restarts gets it too.
    """

    class OneTorchThread(distributed.WorkerPlugin):
        def setup(self, worker) -> None:
            import torch

            torch.set_num_threads(1)

    return OneTorchThread()


@contextlib.contextmanager
def local_client(n_workers: int) -> Iterator[Any]:
    """A ``LocalCluster`` of ``n_workers`` processes with one thread each (torch too) and its client, closed afterwards.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers' environment, so that freed
    memory goes back to the system. Setting it turns off glibc's adaptive ``mmap`` threshold:
    every tensor above 128 kB is then mapped and unmapped anew, which made an SBC simulation
    (SMC with 1000 particles, 20 events) take about twice as long (1.3-2.8 times, on a shared
    machine). The short-lived workers of a campaign's own cluster are spawned without it
    (unless this process has it in its environment already).
    """
    dask, distributed = require("dask"), require("distributed")
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    with cluster, distributed.Client(cluster) as own:
        own.register_plugin(_one_torch_thread(distributed), name="gmmpyro-one-torch-thread")
        yield own


@contextlib.contextmanager
def open_client(client: Any | None) -> Iterator[Any]:
    """``client`` as it is, or a :func:`local_client` of ``os.cpu_count()`` workers, closed afterwards."""
    distributed = require("distributed")
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
        yield client
        return
    with local_client(os.cpu_count() or 1) as own:
        yield own


def default_batch_size(client: Any, n_toys: int) -> int:
    """About four tasks per worker thread, at most 50 toys per task."""
    threads = max(1, sum(client.nthreads().values()))
    return max(1, min(_MAX_BATCH, math.ceil(n_toys / (_TASKS_PER_THREAD * threads))))


def _identity(value: Any) -> Any:
    return value


def run_batches(
    client: Any,
    function: Callable[[Any, list[int]], list[dict]],
    spec: Any,
    toys: Sequence[int],
    batch_size: int,
    on_rows: Callable[[list[dict]], None],
    name: str,
) -> None:
    """Run ``function(spec, batch)`` for batches of ``toys`` on ``client``; ``on_rows`` gets each result.

    ``spec`` travels once, as a task of its own: workers fetch its result from each other, and
    if every worker holding it dies the scheduler recomputes it (scattered data would be lost).
    A worker that dies mid-task has its tasks rerun elsewhere by the scheduler. On an error
    the pending tasks are cancelled and the error is raised; rows already handed to
    ``on_rows`` stay there.
    """
    distributed = require("distributed")
    tag = uuid.uuid4().hex[:8]
    # Dask groups tasks by their key up to the first "-" word that is not alphabetic or starts like hex
    # ("coverage" does): "gmmpyro_coverage_toys" keeps the batches a group of their own, whose measured
    # duration its scheduling (over idle workers) and work stealing go by
    setup = client.submit(_identity, spec, key=f"gmmpyro_{name}_setup-{tag}", pure=False)
    batches = [list(toys[i : i + batch_size]) for i in range(0, len(toys), batch_size)]
    futures = [
        client.submit(function, setup, b, key=f"gmmpyro_{name}_toys-{b[0]}-{b[-1]}-{tag}", pure=False) for b in batches
    ]
    try:
        for future in distributed.as_completed(futures):
            rows = future.result()
            future.release()
            on_rows(rows)
    finally:
        client.cancel([*futures, setup])


def run_campaign(
    function: Callable[[Any, list[int]], list[dict]],
    spec: Any,
    n_toys: int,
    *,
    settings: dict[str, Any],
    columns: list[str],
    out: str | os.PathLike | None,
    client: Any | None,
    batch_size: int | None,
    progress: bool,
    name: str,
    unit: str,
) -> list[dict[str, Any]]:
    """The rows of toys ``0 … n_toys - 1``: read back from ``out`` where stored, the others run (and stored).

    Toys stored beyond ``n_toys`` are left out; each toy is counted once. A client is opened
    (or a local cluster started) only when some toy is left to run.

    Arguments:
        function: ``function(spec, toys) -> rows``, one Dask task; every row has a ``"toy"`` key.
        spec: what every task needs (sent to the workers once).
        n_toys: toys of the campaign.
        settings: the campaign's settings, checked against those stored in ``out``.
        columns: the per-toy columns, in order.
        out: Parquet file or directory (:class:`~gmmpyro.campaigns._store.ToyStore`), or ``None``.
        client: a ``distributed.Client``, or ``None`` for a local cluster of processes.
        batch_size: toys per task, ``None`` for :func:`default_batch_size`.
        progress: show a progress bar.
        name: the campaign's name, a lower-case word: the bar's label and the tasks' key prefix.
        unit: what a toy is called on the progress bar.

    Returns:
        One row per toy, in no particular order.
    """
    rows: list[dict[str, Any]] = []
    store = None
    if out is not None:
        from ._store import ToyStore

        store = ToyStore(out, settings, columns)
        rows = [r for r in store.read() if r["toy"] < n_toys]
    done = {r["toy"] for r in rows}
    todo = [i for i in range(n_toys) if i not in done]
    if not todo:
        return rows

    def collect(batch: list[dict[str, Any]]) -> None:
        if store is not None:
            store.append(batch)
        rows.extend(batch)
        bar.update(len(batch))

    with (
        progress_bar(total=n_toys, initial=len(done), progress=progress, desc=name, unit=unit) as bar,
        open_client(client) as dask_client,
    ):
        size = batch_size or default_batch_size(dask_client, len(todo))
        run_batches(dask_client, function, spec, todo, size, collect, name=name)
    return rows
