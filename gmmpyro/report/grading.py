"""The report's verdicts: :class:`Thresholds` and one grading rule per metric.

A metric is graded ``PASS``, ``WARN`` or ``FAIL`` against its thresholds (``SKIP`` when it
was not run, ``INFO`` when it ran but is reported as information only); a report's verdict is
the :func:`worst` of its graded metrics'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FAIL",
    "INFO",
    "PASS",
    "SKIP",
    "WARN",
    "Thresholds",
    "grade_c2st",
    "grade_contours",
    "grade_kl",
    "grade_marginals",
    "grade_pairs",
    "worst",
]

PASS, WARN, FAIL, SKIP, INFO = "PASS", "WARN", "FAIL", "SKIP", "INFO"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}


def worst(*verdicts: str) -> str:
    """The worst of some verdicts, ``SKIP`` and ``INFO`` left out; ``SKIP`` if nothing was graded.

    Example:
        >>> worst(SKIP, PASS), worst(PASS, WARN, SKIP), worst(INFO, SKIP), worst(INFO, PASS)
        ('PASS', 'WARN', 'SKIP', 'PASS')
    """
    graded = [v for v in verdicts if v in _ORDER]
    return max(graded, key=_ORDER.get) if graded else SKIP


@dataclass(frozen=True)
class Thresholds:
    """Where each metric turns from PASS to WARN to FAIL.

    Arguments:
        kl_pass, kl_warn: KL gap in nats/event (``2·N·KL`` is the expected excess of
            ``-2 ln L`` for ``N`` events).
        auc_pass, auc_warn: classifier-test AUC (0.5: indistinguishable).
        marginal_p: a 1-D marginal whose χ² p-value is below this disagrees significantly;
            it still only WARNs if no well-filled bin deviates by more than ``marginal_deviation``.
        marginal_deviation: largest tolerated ``|model/reference - 1|`` (the paper's ±5 %).
        pull_pass, pull_warn: fraction of 2-D cells with ``|pull| > 3`` (0.27 % for a perfect model).
        iou_pass, iou_warn: mean IoU of the 68 % regions (target: 0.85).
        mle_pass, mle_warn: mean MLE distance model vs truth in parameter units (target: 0.05).

    Example:
        >>> Thresholds().iou_pass
        0.85
    """

    kl_pass: float = 0.01
    kl_warn: float = 0.05
    auc_pass: float = 0.55
    auc_warn: float = 0.60
    marginal_p: float = 1e-3
    marginal_deviation: float = 0.05
    pull_pass: float = 0.01
    pull_warn: float = 0.05
    iou_pass: float = 0.85
    iou_warn: float = 0.70
    mle_pass: float = 0.05
    mle_warn: float = 0.10


def _grade(value: float, good: float, warn: float, higher_is_better: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return SKIP
    if higher_is_better:
        return PASS if value >= good else WARN if value >= warn else FAIL
    return PASS if value <= good else WARN if value <= warn else FAIL


def grade_kl(r, t: Thresholds) -> tuple[str, str]:
    """Verdict and explanation of a :class:`~gmmpyro.validation.KLGap`."""
    return _grade(r.value, t.kl_pass, t.kl_warn), (
        f"KL(truth‖model) = {r.value:.4f} ± {r.stderr:.4f} nats/event "
        f"(PASS ≤ {t.kl_pass}, WARN ≤ {t.kl_warn}, else FAIL)"
    )


def grade_c2st(r, t: Thresholds, *, graded: bool = True) -> tuple[str, str]:
    """Verdict and explanation of a :class:`~gmmpyro.validation.C2ST`.

    With ``graded=False`` (a classifier too weak to be a pass criterion, as in
    :meth:`ReportConfig.quick`) the verdict is ``INFO`` and the line says why.
    """
    numbers = (
        f"classifier AUC = {r.auc:.4f} ± {r.auc_null_stderr:.4f} (z = {r.z:.1f}; 0.5 = indistinguishable; "
        f"{r.n_per_class} events per class"
    )
    if not graded:
        return INFO, (
            f"{numbers}) — not graded, information only: too few events/epochs to detect differences of "
            "the size the other metrics see (ReportConfig.c2st_graded = False, as in --quick)"
        )
    return _grade(r.auc, t.auc_pass, t.auc_warn), f"{numbers}; PASS ≤ {t.auc_pass}, WARN ≤ {t.auc_warn}, else FAIL)"


def grade_marginals(r, t: Thresholds) -> tuple[str, str]:
    """Verdict and explanation of a :class:`~gmmpyro.validation.MarginalComparison`."""
    verdict, notes = PASS, []
    for m in r.marginals:
        if math.isnan(m.p_value) or m.p_value >= t.marginal_p:
            continue
        verdict = worst(verdict, WARN if m.max_ratio_deviation <= t.marginal_deviation else FAIL)
        notes.append(f"{m.name} (p = {m.p_value:.2g}, max |ratio-1| = {m.max_ratio_deviation:.1%})")
    return verdict, (
        f"{r.space}-space 1-D marginals: {', '.join(notes) or 'all compatible'} "
        f"(PASS: χ² p ≥ {t.marginal_p:g} for every observable; WARN: significant, but every bin with "
        f"≥ 1 % of the events within ±{t.marginal_deviation:.0%}; else FAIL)"
    )


def grade_pairs(r, t: Thresholds) -> tuple[str, str]:
    """Verdict and explanation of a :class:`~gmmpyro.validation.PairComparison`."""
    s = r.summary()
    frac = s["fraction_abs_pull_above_3"]
    return _grade(frac, t.pull_pass, t.pull_warn), (
        f"2-D pull maps: {frac:.2%} of {s['cells_tested']} cells with |pull| > 3, pulls "
        f"{s['pull_mean']:.2f} ± {s['pull_std']:.2f} (perfect: 0.27 %, 0 ± 1; PASS ≤ {t.pull_pass:.0%}, "
        f"WARN ≤ {t.pull_warn:.0%}); {s['model_only_cells']} model-only cells"
    )


def grade_contours(r, t: Thresholds, *, true_values: dict[str, float] | None = None) -> tuple[str, str]:
    """Verdict and explanation of a :class:`~gmmpyro.validation.ContourAgreement`.

    ``true_values`` gives the true value of each profiled or fixed parameter, named in the line.
    """
    iou, dist = r.mean_iou_68, r.mean_mle_distance
    failed = sum(bool(f) for f in r.failed)
    verdict = worst(
        _grade(iou, t.iou_pass, t.iou_warn, higher_is_better=True),
        _grade(dist, t.mle_pass, t.mle_warn),
        WARN if failed else PASS,
    )
    scanned = f"{r.params[0]}, {r.params[1]} scanned"
    values = true_values or {}
    for names, how in ((r.profiled, "profiled"), (r.fixed, "fixed at the truth")):
        if names:
            true = ", ".join(f"{p} = {values[p]:.3g}" for p in names if p in values)
            scanned += f"; {', '.join(names)} {how}" + (f", true {true}" if true else "")
    P = len(r.truths)
    where = f"1 pseudo-dataset at {', '.join(f'{p} = {v:.3g}' for p, v in zip(r.params, r.truths[0], strict=True))}"
    where = where if P == 1 else f"{P} pseudo-datasets"
    return verdict, (
        f"inference ({scanned}) on {where} of {r.n_events} events: mean IoU 68 % = "
        f"{iou:.3f} (95 %: {r.mean_iou_95:.3f}), mean MLE distance = {dist:.4f}"
        + (f", {failed} scan(s) failed" if failed else "")
        + f" (PASS: IoU ≥ {t.iou_pass} and distance ≤ {t.mle_pass}; WARN: ≥ {t.iou_warn} and ≤ {t.mle_warn})"
    )
