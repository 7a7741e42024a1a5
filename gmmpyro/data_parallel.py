"""Data-parallel training with PyTorch's own machinery: ``torchrun`` and ``DistributedDataParallel``.

Under ``torchrun --nproc-per-node N`` (or in any script that has called
``torch.distributed.init_process_group``) :func:`~gmmpyro.training.train` runs as one of ``N``
processes. Every process holds the same events and computes the same split and batch order;
each takes every ``N``-th event of a batch (its shard), so the ``N`` processes together see
exactly the batches of a single process, and the gradients, averaged by
``DistributedDataParallel``, are those of the whole batch. Losses are summed across processes
before any decision, so early stopping, learning-rate steps and the best epochs are decided on
the same numbers in every process. Only the main process (rank 0) writes checkpoints and shows
progress.

Without a process group and without ``torchrun``'s environment nothing here communicates:
``current()`` returns the single-process ``SINGLE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from inspect import signature

import torch
import torch.distributed as dist

__all__ = ["SINGLE", "DataParallel", "current", "is_main_process"]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: ``rank`` of ``world_size`` processes.

    Example:
        >>> SINGLE.shard(torch.arange(5)), SINGLE.is_main
        (tensor([0, 1, 2, 3, 4]), True)
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This process's events of a batch: every ``world_size``-th of ``index (B,)``, from ``rank``."""
        return index[self.rank :: self.world_size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes (the same result in each), in place; returned."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every process the main process's parameters and buffers of ``module``."""
        if self.distributed:
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor, src=0)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel`` when there are several processes, else itself.

        Only parameters that require gradients are synchronised; buffers are not broadcast on
        every forward pass (they do not change in training).
        """
        if not self.distributed:
            return module
        ddp = torch.nn.parallel.DistributedDataParallel
        # torch >= 2.13 names the switch forward_sync_buffers and deprecates broadcast_buffers
        no_buffer_sync = "forward_sync_buffers"
        if no_buffer_sync not in signature(ddp).parameters:
            no_buffer_sync = "broadcast_buffers"
        device = next(module.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return ddp(module, device_ids=device_ids, gradient_as_bucket_view=True, **{no_buffer_sync: False})


SINGLE = DataParallel()
"""A single process: sharding keeps everything, sums are the values themselves."""


def current(device: torch.device | str = "cpu") -> DataParallel:
    """The data-parallel run this process belongs to.

    Uses the default process group if the script has initialised one; else, when ``torchrun``'s
    environment says there are several processes (``WORLD_SIZE > 1``), initialises it from that
    environment with the NCCL backend for CUDA models and gloo otherwise; else ``SINGLE``.

    Arguments:
        device: the model's device, which chooses the backend of a group initialised here.

    Example:
        >>> current() == SINGLE  # no torchrun, no process group
        True
    """
    if not dist.is_available():
        return SINGLE
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return SINGLE
        device = torch.device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives run on this process's GPU
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size())


def is_main_process() -> bool:
    """Whether this process is the one that should write files: rank 0, or the only process.

    Under ``torchrun`` every process returns from :meth:`~gmmpyro.DensityModel.fit` with the
    same trained model; save it from one of them.

    Example:
        >>> is_main_process()
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: NCCL needs them on this process's GPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
