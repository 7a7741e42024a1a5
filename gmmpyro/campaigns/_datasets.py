"""One pseudo-dataset of a contour-agreement campaign: draw it from the reference, scan both densities.

Pure torch and NumPy, no Dask: :func:`run_batch` is what a Dask task runs. Dataset ``j`` of
true point ``p`` is task ``toy = j · P + p`` (``P`` true points), and its seeds come from
``(seed, p, j)`` alone (:func:`~gmmpyro.campaigns._checks.derived_seeds`), so its row is the
same wherever, in whatever batch and order it runs, and however many datasets the campaign has.
The scans and the IoU are :func:`gmmpyro.validation.contour_agreement`'s, on one dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import GmmpyroWarning
from ..validation.contours import contour_agreement as one_dataset_agreement
from ._checks import derived_seeds

__all__ = ["AgreementSpec", "columns", "dataset_seeds", "run_batch", "run_dataset"]


@dataclass(frozen=True)
class AgreementSpec:
    """Everything a worker needs to run any dataset of a contour-agreement campaign (sent once).

    Attributes:
        model: the :class:`~gmmpyro.protocols.ConditionalDensity` under test.
        reference: the reference density; draws the datasets with ``sample(n, theta (k,), seed=)``.
        params: all parameter names of ``model``.
        scanned: the two scanned parameters.
        truths: the true points, ``P`` tuples of ``k`` values in ``params`` order.
        n_events: events per dataset.
        grid: ``{name: axis}`` of the two scanned parameters (float lists).
        window: half-width of each dataset's grid around its truth per scanned parameter, or ``None``.
        profile: parameters minimised at every grid point.
        fix: parameters held at the dataset's true value.
        n_starts: starting points of each global fit.
        refine: grid subdivisions for the IoU.
        seed: the campaign's seed.
    """

    model: Any
    reference: Any
    params: tuple[str, ...]
    scanned: tuple[str, str]
    truths: tuple[tuple[float, ...], ...]
    n_events: int
    grid: Mapping[str, tuple[float, ...]]
    window: tuple[float, float] | None
    profile: tuple[str, ...]
    fix: tuple[str, ...]
    n_starts: int
    refine: int
    seed: int


def columns(spec: AgreementSpec) -> list[str]:
    """The per-dataset table's columns, in order."""
    a, b = spec.scanned
    cols = ["toy", "point", "dataset", "seed", "status", "message", "clipped", "iou_68", "iou_95", "mle_distance"]
    cols += [f"mle_{which}_{n}" for which in ("model", "reference") for n in (a, b)]
    cols += ["q_truth_model", "q_truth_reference", "n_invalid_model", "n_invalid_reference"]
    return cols


def dataset_seeds(seed: int, point: int, dataset: int) -> tuple[int, int]:
    """The seeds of the events and of the fits' random starts of dataset ``dataset`` of true point ``point``."""
    events, starts = derived_seeds((seed, point, dataset), 2)
    return events, starts


def run_dataset(spec: AgreementSpec, toy: int) -> dict[str, Any]:
    """One pseudo-dataset: a row of the per-dataset table (see :func:`columns`).

    ``status`` is ``"ok"``, or ``"failed"`` when a scan failed (``message`` says why; the numbers
    are NaN). ``clipped``: a 95 % region reaches the edge of the grid, so its IoU counts the part
    inside only. Errors of the reference's sampler are not caught.
    """
    n_points = len(spec.truths)
    point, dataset = toy % n_points, toy // n_points
    events_seed, starts_seed = dataset_seeds(spec.seed, point, dataset)
    truth = spec.truths[point]
    theta = torch.tensor(truth, dtype=spec.reference.dtype, device=spec.reference.device)  # k
    x = spec.reference.sample(spec.n_events, theta, seed=events_seed)  # N d
    with warnings.catch_warnings():  # failures and clipped regions are read from the result
        warnings.simplefilter("ignore", GmmpyroWarning)
        result = one_dataset_agreement(
            spec.model, spec.reference, [truth], datasets=[x], window=spec.window,
            grid={n: np.asarray(a) for n, a in spec.grid.items()},
            profile=spec.profile, fix=spec.fix, n_starts=spec.n_starts, refine=spec.refine, seed=starts_seed,
        )  # fmt: skip
    failed = result.failed[0]
    row: dict[str, Any] = {
        "toy": toy,
        "point": point,
        "dataset": dataset,
        "seed": events_seed,
        "status": "failed" if failed else "ok",
        "message": failed,
        "clipped": bool(result.clipped[0]),
        "iou_68": float(result.iou_68[0]),
        "iou_95": float(result.iou_95[0]),
        "mle_distance": float(result.mle_distance[0]),
        "q_truth_model": float(result.q_truth_model[0]),
        "q_truth_reference": float(result.q_truth_reference[0]),
    }
    for which in ("model", "reference"):
        mle = getattr(result, f"mle_{which}")[0]
        row.update({f"mle_{which}_{n}": float(v) for n, v in zip(spec.scanned, mle, strict=True)})
        valid = getattr(result, f"valid_{which}")[0]
        row[f"n_invalid_{which}"] = int(np.size(valid) - np.count_nonzero(valid))  # all when failed
    return {c: row[c] for c in columns(spec)}


def run_batch(spec: AgreementSpec, toys: list[int]) -> list[dict[str, Any]]:
    """:func:`run_dataset` for each of ``toys``: one Dask task."""
    return [run_dataset(spec, i) for i in toys]
