"""Sample sizes and grids of the report: :class:`ReportConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..validation import ClassifierConfig
from .grading import Thresholds

__all__ = ["ReportConfig"]


@dataclass(frozen=True)
class ReportConfig:
    """Sample sizes and grids of :func:`write_report`.

    Arguments:
        model_samples: model events compared with the reference (drawn at the reference's ``θ``).
        bins, bins_2d: bins per observable of the 1-D marginals and of the pair maps.
        c2st_events: most events per class of the classifier test; ``0`` skips it.
        c2st_folds: its cross-validation folds; ``classifier`` its network.
        c2st_graded: grade the classifier test; ``False`` reports its AUC as information only
            (verdict ``INFO``, left out of the overall verdict), for a classifier with too few
            events or epochs to see the differences the other metrics see, which would otherwise
            PASS a model they FAIL.
        kl_events: events drawn from the truth for the KL gap.
        reweight_events: events drawn at ``θ_ref`` for the parameter-dependence figures.
        pseudo_points: true points per scanned parameter of the inference check (``3`` → the
            paper's nine); ``0`` skips it. Only with a truth and at least two parameters: the first
            two are scanned, any others profiled (or fixed, see ``nuisance``).
        nuisance: ``"profile"``: parameters beyond the first two are minimised at every grid
            point; ``"fix"``: held at each pseudo-dataset's true value, which tests the same
            θ-dependence of the first two at a fraction of the cost (:meth:`quick`).
        pseudo_events: events per pseudo-dataset (paper: 400).
        grid_points: scan grid points per parameter.
        window: each pseudo-dataset is scanned on its own grid, the true point ± this fraction of
            the half training range (0.27: ±0.4 on the toy's ±1.5, enough for 400 events);
            ``0`` scans the whole training range.
        dpi: resolution of the PNG files.
        thresholds: the verdicts' :class:`Thresholds`.

    Example:
        >>> ReportConfig.quick().model_samples, ReportConfig.quick().c2st_graded
        (20000, False)
    """

    model_samples: int = 200_000
    bins: int = 40
    bins_2d: int = 20
    c2st_events: int = 20_000
    c2st_folds: int = 5
    c2st_graded: bool = True
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    kl_events: int = 100_000
    reweight_events: int = 100_000
    pseudo_points: int = 3
    nuisance: Literal["profile", "fix"] = "profile"
    pseudo_events: int = 400
    grid_points: int = 41
    window: float = 0.27
    dpi: int = 120
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def quick(cls) -> ReportConfig:
        """Small samples and grids: a first look in well under a minute (the classifier test not graded,
        parameters beyond the first two fixed at their true values in the inference check)."""
        return cls(
            model_samples=20_000,
            c2st_events=2_000,
            c2st_folds=3,
            classifier=ClassifierConfig(epochs=10),
            c2st_graded=False,
            kl_events=10_000,
            reweight_events=20_000,
            pseudo_points=1,
            nuisance="fix",
            grid_points=21,
            dpi=80,
        )

    def __post_init__(self) -> None:
        if self.nuisance not in ("profile", "fix"):
            raise ValueError(f"ReportConfig.nuisance must be 'profile' or 'fix', got {self.nuisance!r}")
