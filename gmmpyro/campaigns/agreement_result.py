"""The answer of a contour-agreement campaign: :class:`AgreementResult`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .._results import Result, Table, readonly

__all__ = ["AgreementResult"]


@dataclass(frozen=True, repr=False)
class AgreementResult(Result):
    """Model vs reference profile-likelihood regions on many pseudo-datasets per true point, read-only.

    Made by :func:`~gmmpyro.campaigns.contours.contour_agreement`. Per true point ``p`` the
    means over its datasets that did not fail, with their standard errors ``s/√n`` (``s`` the
    standard deviation over those ``n`` datasets; NaN for ``n < 2``). Datasets whose 95 % region
    reaches the edge of the grid (``clipped``) are in the means: both regions are cut alike, and
    the count says how many there are.

    Attributes:
        params: the two scanned parameters.
        model_params: every parameter of the model, the columns of :attr:`truths`.
        truths: the true points, shape ``(P, k)``.
        profiled: parameters minimised at every grid point.
        fixed: parameters held at each dataset's true value.
        n_datasets: datasets per true point.
        n_events: events per dataset.
        iou_68, iou_95: mean intersection over union of the 68 % and 95 % Wilks regions, shape ``(P,)``.
        iou_68_error, iou_95_error: their standard errors, shape ``(P,)``.
        mle_distance: mean Euclidean distance between the two MLEs (parameter units), shape ``(P,)``.
        mle_distance_error: its standard error, shape ``(P,)``.
        n_done, n_failed, n_clipped: datasets per point that entered the means, whose scan failed
            (see the ``message`` column), and whose 95 % region was clipped; shape ``(P,)``.
        datasets: the per-dataset table ``{column: array (P · n_datasets,)}``, sorted by point,
            then dataset: ``toy``, ``point``, ``dataset``, ``seed`` (of the events), ``status``
            (``"ok"`` or ``"failed"``), ``message``, ``clipped``, ``iou_68``, ``iou_95``,
            ``mle_distance``, ``mle_model_<name>``, ``mle_reference_<name>``, ``q_truth_model``,
            ``q_truth_reference`` (``q`` at the truth), ``n_invalid_model``,
            ``n_invalid_reference`` (grid points whose conditional fit failed).
    """

    params: tuple[str, str]
    model_params: tuple[str, ...]
    truths: np.ndarray
    profiled: tuple[str, ...]
    fixed: tuple[str, ...]
    n_datasets: int
    n_events: int
    iou_68: np.ndarray
    iou_68_error: np.ndarray
    iou_95: np.ndarray
    iou_95_error: np.ndarray
    mle_distance: np.ndarray
    mle_distance_error: np.ndarray
    n_done: np.ndarray
    n_failed: np.ndarray
    n_clipped: np.ndarray
    datasets: Mapping[str, np.ndarray]

    _arrays = (
        "truths", "iou_68", "iou_68_error", "iou_95", "iou_95_error", "mle_distance", "mle_distance_error",
        "n_done", "n_failed", "n_clipped",
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "datasets", MappingProxyType({k: readonly(v) for k, v in self.datasets.items()}))

    def to_pandas(self):
        """The per-dataset table as a ``pandas.DataFrame`` (pandas comes with ArviZ's xarray)."""
        import pandas

        return pandas.DataFrame(dict(self.datasets))

    def summary(self) -> dict:
        """Per true point its means and counts, and the totals."""
        points = [
            {
                "truth": dict(zip(self.model_params, self.truths[p].tolist(), strict=True)),
                "iou_68": float(self.iou_68[p]),
                "iou_95": float(self.iou_95[p]),
                "mle_distance": float(self.mle_distance[p]),
                "n_done": int(self.n_done[p]),
                "n_failed": int(self.n_failed[p]),
                "n_clipped": int(self.n_clipped[p]),
            }
            for p in range(len(self.truths))
        ]
        return {
            "n_done": int(self.n_done.sum()),
            "n_failed": int(self.n_failed.sum()),
            "n_clipped": int(self.n_clipped.sum()),
            "points": points,
        }

    def _table(self) -> Table:
        def cell(mean: float, error: float, digits: int) -> str:
            if math.isnan(mean):
                return "-"
            return f"{mean:.{digits}f}" + ("" if math.isnan(error) else f" ± {error:.{digits}f}")

        rows = []
        for p, truth in enumerate(self.truths):
            label = ", ".join(f"{n} = {v:g}" for n, v in zip(self.model_params, truth, strict=True))
            rows.append(
                (
                    label,
                    cell(self.iou_68[p], self.iou_68_error[p], 3),
                    cell(self.iou_95[p], self.iou_95_error[p], 3),
                    cell(self.mle_distance[p], self.mle_distance_error[p], 4),
                    f"{self.n_done[p]}",
                    f"{self.n_failed[p]}",
                    f"{self.n_clipped[p]}",
                )
            )
        title = (
            f"AgreementResult of ({', '.join(self.params)}): {self.n_datasets} pseudo-datasets of "
            f"{self.n_events} events per true point"
        )
        header = ("truth", "IoU 68 %", "IoU 95 %", "MLE distance", "done", "failed", "clipped")
        return Table(title, rows, header=header, ok=int(self.n_failed.sum()) == 0, align="lrrrrrr")
