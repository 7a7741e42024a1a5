"""Toys as Dask tasks: a cluster when none is given, the campaign sent once, batches as they complete.

``distributed`` is imported when a campaign runs, not with this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._optional import require

__all__ = ["default_batch_size", "open_client", "run_batches"]

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
def open_client(client: Any | None) -> Iterator[Any]:
    """``client`` as it is, or a ``LocalCluster`` of ``os.cpu_count()`` one-thread processes, closed afterwards."""
    distributed = require("distributed")
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
        yield client
        return
    n = os.cpu_count() or 1
    with (
        distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as own,
    ):
        own.register_plugin(_one_torch_thread(distributed), name="gmmpyro-one-torch-thread")
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
