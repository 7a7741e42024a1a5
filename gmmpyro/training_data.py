"""The batches training sees: events held in memory, or windows streamed from Parquet.

Both sources yield ``(table, index)`` pairs: ``table`` is ``[u (n, d), θ scaled (n, k),
weights (n,)]`` (and the joint scores ``(n, k)`` when training has them) in the networks'
dtype, and ``index`` the rows of one batch (or validation chunk) in it, so that a
data-parallel process can take its share of the rows
(:meth:`gmmpyro.data_parallel.DataParallel.shard`) before gathering them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .streaming import StreamedEvents

__all__ = ["InMemoryEvents", "WindowedEvents", "split_indices"]

EVAL_CHUNK = 65_536
"""Events per validation forward pass."""

Table = list[torch.Tensor]


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation event indices used by :func:`~gmmpyro.training.train` (seeded permutation).

    Example:
        >>> train_index, val_index = split_indices(10, 0.2, seed=0)
        >>> len(train_index), len(val_index)
        (8, 2)
    """
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(validation_fraction * n))
    return permutation[n_val:], permutation[:n_val]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class InMemoryEvents:
    """All events at once: on the model's device when it is the CPU or they take under 1 GiB, else on the CPU.

    Arguments:
        u, theta_scaled, weights: the projected events ``(N, d)``, scaled θ ``(N, k)`` and
            training weights ``(N,)``.
        score: the joint scores ``(N, k)``, or ``None``.
        validation_fraction, seed, batch_size: see :class:`~gmmpyro.TrainingConfig`.
        dtype, device: the networks' dtype and device.
    """

    def __init__(self, u, theta_scaled, weights, score=None, *, validation_fraction, seed, batch_size, dtype, device):
        self.seed, self.batch_size = seed, batch_size
        self.train_index, self.val_index = split_indices(u.shape[0], validation_fraction, seed)
        on_device = device.type == "cpu" or u.numel() * 8 < 2**30
        target = device if on_device else torch.device("cpu")
        columns = (u, theta_scaled, weights) if score is None else (u, theta_scaled, weights, score)
        self.table = [t.to(device=target, dtype=dtype) for t in columns]

    def training_batches(self, epoch: int) -> Iterator[tuple[Table, torch.Tensor]]:
        """The batches of ``epoch``: the training events in a seeded random order."""
        generator = _epoch_generator(self.seed, epoch)
        order = self.train_index[torch.randperm(self.train_index.numel(), generator=generator)]
        for start in range(0, order.numel(), self.batch_size):
            yield self.table, order[start : start + self.batch_size]

    def validation_chunks(self) -> Iterator[tuple[Table, torch.Tensor]]:
        """The validation events in chunks of :data:`EVAL_CHUNK`."""
        for start in range(0, self.val_index.numel(), EVAL_CHUNK):
            yield self.table, self.val_index[start : start + EVAL_CHUNK]


class WindowedEvents:
    """Events streamed window by window (:class:`~gmmpyro.streaming.StreamedEvents`); memory holds about two windows.

    Window ``i`` is split with ``split_indices(n_i, validation_fraction, seed + i)``; an epoch
    visits the windows in a seeded random order and each window's training events in a seeded
    random order, batches running on across windows. With one window this is
    :class:`InMemoryEvents` exactly, and the window is read once and kept.

    Arguments:
        stream: the events.
        prepare: ``(x (n, d), θ (n, k), raw weights (n,), joint scores (n, k) or None)``
            (float64, CPU) → the table of those events on the device.
        validation_fraction, seed, batch_size: see :class:`~gmmpyro.TrainingConfig`.
    """

    def __init__(
        self,
        stream: StreamedEvents,
        prepare: Callable[..., Table],
        *,
        validation_fraction: float,
        seed: int,
        batch_size: int,
    ) -> None:
        self.stream, self.prepare = stream, prepare
        self.validation_fraction, self.seed, self.batch_size = validation_fraction, seed, batch_size
        self.sizes = stream.window_sizes()
        small = [i for i, n in enumerate(self.sizes) if n < 2]
        if small:
            raise ValueError(
                f"{stream.events.path}: window {small[0]} holds a single event, too few for a training/validation "
                "split: write larger row groups"
            )
        self._kept = prepare(*stream.window(0)) if len(self.sizes) == 1 else None

    def _table(self, i: int) -> Table:
        return self._kept if self._kept is not None else self.prepare(*self.stream.window(i))

    def _split(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return split_indices(self.sizes[i], self.validation_fraction, self.seed + i)

    def training_batches(self, epoch: int) -> Iterator[tuple[Table, torch.Tensor]]:
        """The batches of ``epoch``, ``batch_size`` events each but the last."""
        generator = _epoch_generator(self.seed, epoch)
        windows = torch.randperm(len(self.sizes), generator=generator).tolist() if len(self.sizes) > 1 else [0]
        carried: Table | None = None
        for i in windows:
            train_index, _ = self._split(i)
            rows = train_index[torch.randperm(train_index.numel(), generator=generator)]
            table = [t[rows.to(t.device)] for t in self._table(i)]
            if carried is not None:
                table = [torch.cat(pair) for pair in zip(carried, table, strict=True)]
            full = table[0].shape[0] - table[0].shape[0] % self.batch_size
            for start in range(0, full, self.batch_size):
                yield table, torch.arange(start, start + self.batch_size)
            carried = [t[full:] for t in table]
        if carried is not None and carried[0].shape[0]:
            yield carried, torch.arange(carried[0].shape[0])

    def validation_chunks(self) -> Iterator[tuple[Table, torch.Tensor]]:
        """Each window's validation events in chunks of :data:`EVAL_CHUNK`."""
        for i in range(len(self.sizes)):
            _, val_index = self._split(i)
            table = self._table(i)
            for start in range(0, val_index.numel(), EVAL_CHUNK):
                yield table, val_index[start : start + EVAL_CHUNK]
