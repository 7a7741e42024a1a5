"""The report itself: :func:`write_report` runs every step, saves the figures and the summaries."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .._results import Result, Table
from .config import ReportConfig
from .context import ReportContext
from .grading import FAIL, PASS, SKIP, WARN, worst
from .steps import STEPS, Step
from .summary import machine, markdown, write_json

__all__ = ["ReportResult", "write_report"]

_HEADLINE = ("kl_gap", "c2st", "inference", "marginals_data", "marginals_latent", "pairs")  # order of the verdicts


@dataclass(frozen=True, repr=False)
class ReportResult(Result):
    """What :func:`write_report` wrote and found.

    Attributes:
        out_dir: the report folder.
        verdict: the worst verdict over the graded metrics (``PASS``, ``WARN`` or ``FAIL``;
            ``SKIP`` if none was graded).
        verdicts: ``{metric: (verdict, one-line explanation with thresholds)}``; a verdict is
            ``PASS``, ``WARN``, ``FAIL``, ``INFO`` (reported, not graded) or ``SKIP`` (not run).
        metrics: the headline numbers, as in ``summary.json``.
        figures: paths of the PNG files.
        warnings: warnings raised while the report ran (category: message).
        seconds: wall time.
    """

    out_dir: Path
    verdict: str
    verdicts: dict
    metrics: dict
    figures: tuple[Path, ...]
    warnings: tuple[str, ...]
    seconds: float

    @property
    def summary_md(self) -> Path:
        """Path of ``summary.md``."""
        return self.out_dir / "summary.md"

    @property
    def summary_json(self) -> Path:
        """Path of ``summary.json``."""
        return self.out_dir / "summary.json"

    def exit_status(self, *, strict: bool = False) -> int:
        """``1`` if the verdict is ``FAIL`` (or, with ``strict``, ``WARN``), else ``0``: the exit
        status of ``gmmpyro report`` (``--strict``), for scripts and CI.

        Example:
            >>> from pathlib import Path
            >>> r = ReportResult(Path("r"), "WARN", {}, {}, (), (), 1.0)
            >>> r.exit_status(), r.exit_status(strict=True)
            (0, 1)
        """
        return int(self.verdict == FAIL or (strict and self.verdict == WARN))

    def _table(self) -> Table:
        title = f"ReportResult: {self.verdict} — {self.out_dir} ({len(self.figures)} figures, {self.seconds:.0f} s)"
        rows = [(verdict, f"{key}: {line}") for key, (verdict, line) in self.verdicts.items()]
        return Table(title, rows, ok={PASS: True, FAIL: False}.get(self.verdict))


def write_report(
    model,
    reference_x,
    reference_theta=None,
    *,
    truth=None,
    out_dir,
    seed: int = 0,
    progress: bool = True,
    config: ReportConfig | None = None,
) -> ReportResult:
    """Validate a trained model against reference events (and the truth) and write a report folder.

    Writes into ``out_dir``: ``marginals_data.png`` and ``marginals_latent.png`` (1-D marginals
    with ratio panels), ``pairs_reference.png``, ``pairs_model.png``, ``pairs_pull.png`` (2-D
    marginals and the pull map of eq. 10), ``dependence_<observable>.png`` (reweighted
    ``p(x|θ)/p(x|θ_ref)``), ``mixture.png`` (the first observable's Gaussian components),
    ``inference.png`` (Fig. 15: 68/95 % regions model vs truth; with ``truth`` and at least
    two parameters), ``training.png`` (loss and learning rate), then ``summary.md`` and
    ``summary.json`` (headline numbers and a verdict per metric, thresholds stated) and
    ``details.json`` (every result's :meth:`to_dict`). Warnings raised on the way are collected
    into the summary instead of being raised.

    The overall verdict is the worst of the graded metrics; with ``config.c2st_graded = False``
    (as in :meth:`ReportConfig.quick`) the classifier test is reported as ``INFO`` only. The
    inference check scans the first two parameters and profiles any others at the reference
    events' value (if they share one; else the centre of the training range). The dependence
    and mixture figures take ``θ_ref`` from the reference events in the same way, and move their
    ``θ`` points onto the reference's values only along parameters where it has several.

    Arguments:
        model: a trained :class:`~gmmpyro.DensityModel`.
        reference_x: reference events, shape ``(N, d)``.
        reference_theta: their parameters, ``(N, k)`` or ``(k,)``; ``None`` means the centre of
            the model's training range (stated in the summary).
        truth: the true density (a :class:`~gmmpyro.protocols.ConditionalDensity`, e.g.
            :class:`~gmmpyro.toy.ToyModel`), for the KL gap, the truth curves and the inference check.
        out_dir: the folder (created if needed).
        seed: seed of every random draw.
        progress: show a progress bar over the steps.
        config: sample sizes and thresholds (:class:`ReportConfig`).

    Returns:
        A :class:`ReportResult`.

    Raises:
        ValueError: an untrained model, events or parameters of the wrong shape or outside the
            observables' bounds, or a truth with other observables or parameters.
    """
    config = config if config is not None else ReportConfig()
    tic = time.perf_counter()
    ctx = ReportContext.build(
        model, reference_x, reference_theta, truth=truth, out_dir=out_dir, seed=seed, config=config
    )
    steps = []
    for step in STEPS:
        reason = step.skipped(ctx) if step.skipped else None
        if reason is None:
            steps.append(step)
        else:
            ctx.verdicts[step.metric] = (SKIP, reason)
    caught = _run(steps, ctx, progress)
    return _write_summary(ctx, caught, seconds=time.perf_counter() - tic)


def _run(steps: Sequence[Step], ctx: ReportContext, progress: bool) -> list[str]:
    """Run the steps under a progress bar; returns the distinct warnings they raised."""
    from .._progress import progress_bar

    bar = progress_bar(steps, progress=progress, desc="report", unit="step")
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        for step in bar:
            bar.set_postfix_str(step.label)
            step.run(ctx)
    caught: list[str] = []
    for w in recorded:
        text = f"{w.category.__name__}: {w.message}"
        if text not in caught:
            caught.append(text)
    return caught


def _write_summary(ctx: ReportContext, caught: list[str], seconds: float) -> ReportResult:
    """Write ``summary.json``, ``details.json`` and ``summary.md``; the :class:`ReportResult`."""
    verdicts = {key: ctx.verdicts[key] for key in sorted(ctx.verdicts, key=_HEADLINE.index)}
    verdict = worst(*(v for v, _ in verdicts.values()))
    metrics = {key: r.summary() for key, r in ctx.results.items()}
    inputs = {
        "reference_events": ctx.x_ref.shape[0],
        "reference_theta": ctx.theta_note,
        "reference_points": None if ctx.distinct is None else len(ctx.distinct),
        "model_events": int(ctx.x_model.shape[0]),
        "truth": None if ctx.truth is None else repr(ctx.truth),
        "observables": ctx.names,
        "params": ctx.params,
        "seed": ctx.seed,
        "machine": machine(),
        "seconds": seconds,
    }
    summary = {
        "verdict": verdict,
        "verdicts": {key: {"verdict": v, "line": line} for key, (v, line) in verdicts.items()},
        "metrics": metrics,
        "thresholds": asdict(ctx.config.thresholds),
        "figures": [p.name for p in ctx.figures],
        "warnings": caught,
        "inputs": inputs,
    }
    write_json(ctx.out / "summary.json", summary)
    write_json(ctx.out / "details.json", {key: r.to_dict() for key, r in ctx.results.items()})
    (ctx.out / "summary.md").write_text(markdown(summary, ctx.model.n_parameters), encoding="utf-8")
    return ReportResult(
        out_dir=ctx.out,
        verdict=verdict,
        verdicts=verdicts,
        metrics=metrics,
        figures=tuple(ctx.figures),
        warnings=tuple(caught),
        seconds=seconds,
    )
