"""Can the model be trusted? Numbers comparing a trained model with reference events or the truth.

* :func:`kl_gap` — ``KL(p_true ‖ p_model)`` in nats/event, when the true density is known.
* :func:`c2st` — a classifier two-sample test (cross-validated AUC and accuracy) between model
  samples and reference events, when it is not.
* :func:`compare_marginals`, :func:`compare_pairs` — binned 1-D marginals and 2-D pull maps
  (journal eq. 10) with per-bin pulls and χ².
* :func:`reweighted_dependence`, :func:`simulated_dependence` — how each marginal changes with
  ``θ``, by reweighting one sample at ``θ_ref``.
* :func:`contour_agreement` — MLE distance and IoU of the 68 %/95 % regions, model vs reference,
  on pseudo-datasets (journal Fig. 15).

Each returns a frozen result object with ``to_dict()``, ``summary()`` and a readable ``repr``;
the figures are in :mod:`gmmpyro.plotting`, the whole check in :func:`gmmpyro.report.write_report`.
"""

from .classifier import C2ST, ClassifierConfig, c2st
from .contours import ContourAgreement, contour_agreement, region_iou
from .divergence import KLGap, kl_gap
from .histograms import (
    EMPTY,
    MODEL_ONLY,
    REFERENCE_ONLY,
    Marginal1D,
    MarginalComparison,
    binned_pulls,
    compare_marginals,
)
from .pairs import PairComparison, PairMap, compare_pairs
from .reweighting import ParameterDependence, reweighted_dependence, simulated_dependence

__all__ = [
    "C2ST",
    "EMPTY",
    "MODEL_ONLY",
    "REFERENCE_ONLY",
    "ClassifierConfig",
    "ContourAgreement",
    "KLGap",
    "Marginal1D",
    "MarginalComparison",
    "PairComparison",
    "PairMap",
    "ParameterDependence",
    "binned_pulls",
    "c2st",
    "compare_marginals",
    "compare_pairs",
    "contour_agreement",
    "kl_gap",
    "region_iou",
    "reweighted_dependence",
    "simulated_dependence",
]
