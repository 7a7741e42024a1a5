"""Training events larger than memory: Parquet files read a window of row groups at a time.

``model.fit(ParquetEvents("events/"))`` trains on every ``*.parquet`` file of a folder (or on
one file) without loading it: the events are read as windows of consecutive row groups of
about ``window_rows`` rows, so memory holds one window (or one row group, if larger), never
the file. Two passes over the files come first: the parameter and weight columns (ranges,
weights, the reference point), then every column (checked event by event, fingerprinted for
checkpoints, and the reference events that define the projection collected). Then each epoch
reads each window twice, once to train and once for the validation loss.

The split and the batch order follow :func:`gmmpyro.training.train` window by window: the
events of window ``i`` are split with ``split_indices(n_i, validation_fraction, seed + i)``,
an epoch visits the windows in a seeded random order and each window's training events in a
seeded random order, and batches run on across window boundaries. With a single window this
is exactly in-memory training on the same events.

``pyarrow`` is imported when events are read (``pip install pyarrow`` or
``"gmmpyro[distributed]"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .observables import as_events, check_events

__all__ = ["ParquetEvents", "StreamedEvents"]

_MAX_GRID_POINTS = 100_000  # more distinct θ than this (or than half the events): θ is not on a grid


@dataclass(frozen=True)
class ParquetEvents:
    """Simulated events in Parquet, for :meth:`DensityModel.fit` to stream instead of loading.

    The files have one column per observable and per parameter, named as in the model, and
    optionally a column of event weights.

    Arguments:
        path: a ``.parquet`` file or a folder whose ``*.parquet`` files (sorted by name) hold
            the events.
        weights: the column of Monte-Carlo weights, or ``None`` for unit weights.
        score: the columns of the simulator's joint score, one per parameter in the model's
            order (see ``score`` of :func:`~gmmpyro.training.train`), or ``None``.
        window_rows: rows held in memory at once: consecutive row groups are read together up
            to this many rows (a larger row group is read alone). Write files with row groups
            well below it (``pyarrow.parquet.write_table(..., row_group_size=...)``).
        reference_rows: at most this many reference events define the projection; when more
            qualify (e.g. every event, for θ not on a grid), a seeded random subset of about
            this many is used.

    Example:
        >>> ParquetEvents("events/", weights="w").window_rows
        1000000
    """

    path: str | os.PathLike
    weights: str | None = None
    score: tuple[str, ...] | None = None
    window_rows: int = 1_000_000
    reference_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.score is not None:
            object.__setattr__(self, "score", tuple(self.score))
        for name in ("window_rows", "reference_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ParquetEvents.{name} must be a positive integer, got {value!r}")

    def files(self) -> list[Path]:
        """The Parquet files, in reading order.

        Raises:
            ValueError: the path does not exist, or a folder holds no ``.parquet`` file.
        """
        path = Path(self.path)
        if path.is_dir():
            files = sorted(path.glob("*.parquet"))
            if not files:
                raise ValueError(f"{path}: no .parquet files in this folder")
            return files
        if not path.exists():
            raise ValueError(f"{path}: no such file or folder")
        return [path]


@dataclass(frozen=True)
class _RowGroup:
    file: Path
    index: int
    rows: int


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("streaming Parquet events needs pyarrow: pip install pyarrow") from error
    return pq


class StreamedEvents:
    """The events of a :class:`ParquetEvents` as seen by training: checked, summarised, read by window.

    Arguments:
        events: the files.
        observables: the model's observables (their names are the ``x`` columns).
        params: the model's parameter names (the ``θ`` columns).
        reference: the projection's reference point ``(k,)``, or ``None`` for the simulated
            point nearest the centre of the range (every event when θ is not on a grid).
        seed: seed of the reference subset when more than ``events.reference_rows`` qualify.

    Raises:
        ValueError: naming the file (and row group), for a missing or non-numeric column, a
            file without events, non-finite θ or weights, negative weights, or events outside
            the observables' bounds.
    """

    def __init__(self, events: ParquetEvents, observables, params, *, reference=None, seed: int = 0) -> None:
        self.events, self.observables, self.params = events, tuple(observables), list(params)
        self.x_columns = [o.name for o in self.observables]
        self.has_score = events.score is not None
        if self.has_score and len(events.score) != len(self.params):
            raise ValueError(
                f"ParquetEvents.score names {len(events.score)} columns {list(events.score)}; the model has "
                f"{len(self.params)} parameters {self.params}: one score column each"
            )
        self.columns = self.x_columns + self.params + ([events.weights] if events.weights else [])
        self.columns += list(events.score or ())
        self.row_groups = self._row_groups()
        self.n_events = sum(group.rows for group in self.row_groups)
        self.windows = _windows(self.row_groups, events.window_rows)
        self._summarise()
        self.reference_point = self._reference_point(reference)
        self._read_all(seed)

    # ------------------------------------------------------------------ files and windows

    def _row_groups(self) -> list[_RowGroup]:
        pq = _pyarrow_parquet()
        groups = []
        for file in self.events.files():
            try:
                handle = pq.ParquetFile(file)
            except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
                raise ValueError(f"{file}: cannot read it as Parquet ({error})") from error
            schema = handle.schema_arrow
            missing = [name for name in self.columns if name not in schema.names]
            if missing:
                raise ValueError(f"{file}: no column(s) {missing}; it has {schema.names}")
            for name in self.columns:
                kind = schema.field(name).type
                if not _is_number(kind):
                    raise ValueError(f"{file}: column {name!r} holds {kind}, not numbers")
            if handle.metadata.num_rows == 0:
                raise ValueError(f"{file}: the file holds no events")
            groups += [
                _RowGroup(file, i, handle.metadata.row_group(i).num_rows)
                for i in range(handle.num_row_groups)
                if handle.metadata.row_group(i).num_rows > 0
            ]
        return groups

    def _read(self, group: _RowGroup, columns: list[str]) -> np.ndarray:
        """The ``columns`` of one row group as a float64 array ``(rows, len(columns))``."""
        table = _pyarrow_parquet().ParquetFile(group.file).read_row_group(group.index, columns=columns)
        if table.num_rows != group.rows:
            raise ValueError(f"{group.file}: row group {group.index} changed while training")
        return np.stack([table.column(name).to_numpy().astype(np.float64) for name in columns], -1)

    def _where(self, group: _RowGroup) -> str:
        return f"{group.file}, row group {group.index}"

    # ------------------------------------------------------------------ the two passes

    def _summarise(self) -> None:
        """Pass 1 over θ and the weights: ranges, weight scale and total, distinct points."""
        k = len(self.params)
        low = torch.full((k,), torch.inf, dtype=torch.float64)
        high = -low
        weight_max, weight_sum, points, on_grid = 0.0, 0.0, set(), True
        columns = self.params + ([self.events.weights] if self.events.weights else [])
        for group in self.row_groups:
            values = torch.from_numpy(self._read(group, columns))
            theta = values[:, :k]
            if not torch.isfinite(theta).all():
                raise ValueError(f"{self._where(group)}: θ contains NaN or inf")
            low, high = torch.minimum(low, theta.min(0).values), torch.maximum(high, theta.max(0).values)
            if self.events.weights:
                w = values[:, k]
                if not torch.isfinite(w).all() or (w < 0).any():
                    raise ValueError(f"{self._where(group)}: weights must be finite and non-negative")
                weight_max, weight_sum = max(weight_max, float(w.max())), weight_sum + float(w.sum())
            if on_grid:
                points.update(map(tuple, torch.unique(theta, dim=0).tolist()))
                on_grid = len(points) <= _MAX_GRID_POINTS
        if self.events.weights and weight_max == 0:
            raise ValueError(f"{self.events.path}: all weights are zero")
        self.theta_low, self.theta_high = low, high
        # the weights are scaled to mean 1 in training, as in memory: w / max / mean(w / max)
        self.weight_max = weight_max if self.events.weights else 1.0
        self.weight_mean = weight_sum / weight_max / self.n_events if self.events.weights else 1.0
        on_grid = on_grid and 2 * len(points) <= self.n_events
        self.points = torch.tensor(sorted(points), dtype=torch.float64) if on_grid else None

    def _reference_point(self, reference) -> torch.Tensor | None:
        """The reference θ ``(k,)``; ``None``: every event is a reference event (θ not on a grid)."""
        if reference is not None:
            reference = torch.as_tensor(reference, dtype=torch.float64)
            if reference.dtype == torch.bool or reference.shape != (len(self.params),):
                raise ValueError(
                    f"streamed events take a reference θ value of shape ({len(self.params)},), not a mask"
                )
            return reference
        if self.points is None:
            return None
        centre, width = (self.theta_low + self.theta_high) / 2, self.theta_high - self.theta_low
        return self.points[(((self.points - centre) / width) ** 2).sum(-1).argmin()]

    def _read_all(self, seed: int) -> None:
        """Pass 2 over every column: check the events, fingerprint them, collect the reference events."""
        parts = ("x", "theta", "weights", "score") if self.has_score else ("x", "theta", "weights")
        digests = {part: hashlib.sha256() for part in parts}
        reference_x, reference_w, n_reference = [], [], 0
        generator = torch.Generator().manual_seed(seed)
        keep = 1.0 if self.reference_point is not None else min(1.0, self.events.reference_rows / self.n_events)
        width = self.theta_high - self.theta_low
        for group in self.row_groups:
            x, theta, w, score = self._window_arrays([group])
            try:
                check_events(x, self.observables)
            except ValueError as error:
                raise ValueError(f"{self._where(group)}: {error}") from error
            if score is not None and not torch.isfinite(score).all():
                raise ValueError(f"{self._where(group)}: the score columns contain NaN or inf")
            for part, values in zip(parts, (x, theta, w, score), strict=False):
                digests[part].update(values.numpy().tobytes())
            if self.reference_point is None:
                mask = torch.rand(x.shape[0], generator=generator, dtype=torch.float64) < keep
            else:
                mask = ((theta - self.reference_point).abs() <= 1e-9 * width).all(-1)
            n_reference += int(mask.sum())
            reference_x.append(x[mask])
            reference_w.append(w[mask])
        if n_reference == 0:
            raise ValueError(f"{self.events.path}: no events at the reference point {self.reference_point.tolist()}")
        self.reference_x, self.reference_weights = torch.cat(reference_x), torch.cat(reference_w)
        if self.reference_point is not None and n_reference > self.events.reference_rows:
            chosen = torch.randperm(n_reference, generator=generator)[: self.events.reference_rows].sort().values
            self.reference_x, self.reference_weights = self.reference_x[chosen], self.reference_weights[chosen]
        self.digests = {part: digest.hexdigest() for part, digest in digests.items()}
        point = None if self.reference_point is None else self.reference_point.tolist()
        reference = {"point": point, "rows": self.events.reference_rows, "seed": seed}
        self.digests["reference"] = hashlib.sha256(json.dumps(reference).encode()).hexdigest()

    # ------------------------------------------------------------------ reading for training

    def _window_arrays(self, groups: list[_RowGroup]) -> tuple[torch.Tensor, ...]:
        """``x (n, d)``, ``θ (n, k)``, the raw weights ``(n,)`` and the scores ``(n, k)`` (or ``None``), float64."""
        values = torch.from_numpy(np.concatenate([self._read(group, self.columns) for group in groups]))
        d, k = len(self.x_columns), len(self.params)
        x = as_events(values[:, :d], self.observables, dtype=torch.float64, device="cpu")
        w = values[:, d + k] if self.events.weights else torch.ones(values.shape[0], dtype=torch.float64)
        score = values[:, -k:] if self.has_score else None
        return x, values[:, d : d + k], w, score

    def window(self, i: int) -> tuple[torch.Tensor, ...]:
        """Window ``i``: ``x (n, d)``, ``θ (n, k)``, weights ``(n,)``, scores ``(n, k)`` or ``None`` (float64, CPU)."""
        return self._window_arrays(self.windows[i])

    def window_sizes(self) -> list[int]:
        """Rows per window."""
        return [sum(group.rows for group in window) for window in self.windows]


def _windows(groups: list[_RowGroup], window_rows: int) -> list[list[_RowGroup]]:
    """Consecutive row groups gathered into windows of at most ``window_rows`` rows (or one group)."""
    windows: list[list[_RowGroup]] = []
    rows = 0
    for group in groups:
        if windows and rows + group.rows <= window_rows:
            windows[-1].append(group)
            rows += group.rows
        else:
            windows.append([group])
            rows = group.rows
    return windows


def _is_number(kind) -> bool:
    import pyarrow.types as types

    return types.is_integer(kind) or types.is_floating(kind) or types.is_boolean(kind)
