"""The report itself: :func:`write_report` runs every check, saves the figures and the summaries."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..observables import check_events
from .config import (
    SKIP,
    ReportConfig,
    grade_c2st,
    grade_contours,
    grade_kl,
    grade_marginals,
    grade_pairs,
    worst,
)
from .summary import machine, markdown, write_json

__all__ = ["ReportResult", "write_report"]

_PAPER_TRUTHS = 0.8 / 1.5  # the paper's true points ±0.8 on a ±1.5 training range (Fig. 15)
_SPREAD = 2 / 3  # θ points of the dependence and mixture figures: ±1 on the toy's ±1.5 (a grid value)


@dataclass(frozen=True, repr=False)
class ReportResult:
    """What :func:`write_report` wrote and found.

    Attributes:
        out_dir: the report folder.
        verdict: the worst verdict over all metrics (``PASS``, ``WARN`` or ``FAIL``).
        verdicts: ``{metric: (verdict, one-line explanation with thresholds)}``.
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

    def __repr__(self) -> str:
        head = f"ReportResult: {self.verdict} — {self.out_dir}"
        lines = [f"{head} ({len(self.figures)} figures, {self.seconds:.0f} s)"]
        lines += [f"  {v:<5} {k}: {line}" for k, (v, line) in self.verdicts.items()]
        return "\n".join(lines)


def _snap(points: np.ndarray, distinct: np.ndarray | None) -> np.ndarray:
    """Move each coordinate onto the nearest value the reference events have (so simulated events exist)."""
    if distinct is None:
        return points
    out = points.copy()
    for j in range(points.shape[1]):
        values = np.unique(distinct[:, j])
        out[:, j] = values[np.abs(values[None, :] - points[:, j : j + 1]).argmin(1)]
    _, keep = np.unique(out, axis=0, return_index=True)
    return out[np.sort(keep)]


def _dependence_points(centre: np.ndarray, half: np.ndarray, distinct) -> np.ndarray:
    k = len(centre)
    if k <= 2:
        offsets = np.array(np.meshgrid(*[[-_SPREAD, 0.0, _SPREAD]] * k, indexing="ij")).reshape(k, -1).T
    else:  # one parameter at a time
        offsets = np.zeros((2 * k + 1, k))
        for j in range(k):
            offsets[2 * j + 1, j], offsets[2 * j + 2, j] = -_SPREAD, _SPREAD
    return _snap(centre + offsets * half, distinct)


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
    ``inference.png`` (Fig. 15: 68/95 % regions model vs truth; with ``truth`` and two
    parameters), ``training.png`` (loss and learning rate), then ``summary.md`` and
    ``summary.json`` (headline numbers and a verdict per metric, thresholds stated) and
    ``details.json`` (every result's :meth:`to_dict`). Warnings raised on the way are collected
    into the summary instead of being raised.

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
    from .._progress import progress_bar

    config = config if config is not None else ReportConfig()
    tic = time.perf_counter()
    if not getattr(model, "is_fitted", False):
        raise ValueError("the model is not trained: train it or load a saved model first")
    names = [o.name for o in model.observables]
    params = list(model.params)
    if truth is not None and (list(truth.params) != params or [o.name for o in truth.observables] != names):
        raise ValueError(
            f"the truth has observables {[o.name for o in truth.observables]} and parameters "
            f"{list(truth.params)}; the model has {names} and {params}"
        )
    x_ref = torch.as_tensor(reference_x, dtype=torch.float64)
    if x_ref.dim() != 2 or x_ref.shape[0] == 0:
        raise ValueError(f"reference_x must have shape (N, {len(names)}), got {tuple(x_ref.shape)}")
    check_events(x_ref, model.observables, what="reference_x")
    N, k = x_ref.shape[0], len(params)
    bounds = model.theta_bounds.double().cpu().numpy()  # k 2
    centre, half = bounds.mean(1), (bounds[:, 1] - bounds[:, 0]) / 2
    theta_note = "given per event"
    if reference_theta is None:
        theta_ref_rows = torch.as_tensor(centre).expand(N, k).clone()
        theta_note = f"not given: assumed the centre of the training range {centre.tolist()}"
    else:
        theta_ref_rows = torch.as_tensor(reference_theta, dtype=torch.float64)
        if theta_ref_rows.shape == (k,):
            theta_ref_rows = theta_ref_rows.expand(N, k).clone()
            theta_note = "one point for all events"
        if theta_ref_rows.shape != (N, k):
            raise ValueError(f"reference_theta must have shape ({N}, {k}) or ({k},), got {tuple(theta_ref_rows.shape)}")
        if not torch.isfinite(theta_ref_rows).all():
            raise ValueError("reference_theta contains NaN or inf")
    distinct = np.unique(theta_ref_rows.numpy(), axis=0)
    distinct = distinct if len(distinct) <= 64 else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = config.thresholds
    rng = np.random.default_rng(seed)

    results, verdicts, figures = {}, {}, []

    def save(fig, name: str) -> None:
        import matplotlib.pyplot as plt

        path = out / f"{name}.png"
        fig.savefig(path, dpi=config.dpi)
        plt.close(fig)
        figures.append(path)

    state: dict = {}

    def sample_model() -> None:
        if config.model_samples >= N:
            reps, rows = max(1, round(config.model_samples / N)), np.arange(N)
        else:
            reps, rows = 1, np.sort(rng.choice(N, config.model_samples, replace=False))
        theta_rows = theta_ref_rows[rows].to(model.dtype)
        x_model = model.sample(reps, theta_rows, seed=seed).reshape(-1, len(names)).double()
        state["x_model"] = x_model
        state["theta_model"] = theta_rows.double().repeat(reps, 1)

    def marginals() -> None:
        from ..plots_validation import plot_marginals
        from ..validation import compare_marginals

        r = compare_marginals(state["x_model"], x_ref, observables=model.observables, bins=config.bins)
        results["marginals_data"], verdicts["marginals_data"] = r, grade_marginals(r, t)
        save(plot_marginals(r), "marginals_data")
        u_model = model.projection.forward(state["x_model"], check=False)
        u_ref = model.projection.forward(x_ref, check=False)
        lo, hi = model.latent_range
        ranges = [(lo, hi) if o.bounded and not o.discrete else None for o in model.observables]
        latent = [o if o.discrete else o.name for o in model.observables]  # discrete ones are not projected
        r = compare_marginals(u_model, u_ref, observables=latent, bins=config.bins, ranges=ranges, space="latent")
        results["marginals_latent"], verdicts["marginals_latent"] = r, grade_marginals(r, t)
        save(plot_marginals(r), "marginals_latent")

    def pairs() -> None:
        from ..plots_validation import plot_pairs
        from ..validation import compare_pairs

        r = compare_pairs(state["x_model"], x_ref, observables=model.observables, bins=config.bins_2d)
        results["pairs"], verdicts["pairs"] = r, grade_pairs(r, t)
        for show in ("reference", "model", "pull"):
            save(plot_pairs(r, show=show), f"pairs_{show}")

    def classifier() -> None:
        from ..validation import c2st

        with_theta = len(np.unique(theta_ref_rows.numpy(), axis=0)) > 1
        r = c2st(
            state["x_model"], x_ref, theta_a=state["theta_model"] if with_theta else None,
            theta_b=theta_ref_rows if with_theta else None, names=names, n_folds=config.c2st_folds,
            max_events=config.c2st_events, classifier=config.classifier, seed=seed,
        )  # fmt: skip
        results["c2st"], verdicts["c2st"] = r, grade_c2st(r, t)

    def kl() -> None:
        from ..validation import kl_gap

        rows = np.sort(rng.choice(N, min(N, config.kl_events), replace=False))
        theta_rows = theta_ref_rows[rows].to(truth.dtype)
        x_true = truth.sample(1, theta_rows, seed=seed + 1).reshape(len(rows), -1)
        r = kl_gap(model, truth, x_true, theta_rows, params=params)
        results["kl_gap"], verdicts["kl_gap"] = r, grade_kl(r, t)

    def dependence() -> None:
        from ..plots_validation import plot_parameter_dependence
        from ..validation import reweighted_dependence, simulated_dependence

        theta_ref = _snap(centre[None], distinct)[0]
        points = _dependence_points(centre, half, distinct)
        r = reweighted_dependence(model, theta_ref, points, n=config.reweight_events, seed=seed + 2)
        results["dependence_model"] = r
        compare = []
        if truth is not None:
            rt = reweighted_dependence(
                truth,
                theta_ref,
                points,
                n=config.reweight_events,
                edges=r.edges,
                source="truth",
                seed=seed + 3,
            )
            results["dependence_truth"] = rt
            compare.append(rt)
        at_ref = np.all(np.abs(theta_ref_rows.numpy() - theta_ref) <= 1e-6, axis=1)
        if distinct is not None and at_ref.any() and len(distinct) > 1:
            rs = simulated_dependence(
                x_ref, theta_ref_rows, theta_ref, points, edges=r.edges, names=names, params=params
            )
            results["dependence_simulated"] = rs
            compare.append(rs)
        for name in names:
            save(plot_parameter_dependence(r, observable=name, compare=compare), f"dependence_{name}")

    def mixture() -> None:
        from ..plots_validation import plot_mixture

        first = model.order[0]
        if model.observables[first].discrete:
            return
        theta_ref = _snap(centre[None], distinct)[0]
        offsets = np.zeros((3, k))
        offsets[1, 0], offsets[2, 0] = -_SPREAD, _SPREAD
        points = _snap(theta_ref + offsets * half, distinct)
        save(plot_mixture(model, first, points, reference=(x_ref, theta_ref_rows)), "mixture")

    def inference() -> None:
        from ..plots_validation import plot_contour_agreement
        from ..validation import contour_agreement

        values = [centre + f * half for f in np.linspace(-_PAPER_TRUTHS, _PAPER_TRUTHS, config.pseudo_points)]
        if config.pseudo_points == 1:
            values = [centre]
        truths = np.array(np.meshgrid(*[[v[j] for v in values] for j in range(2)], indexing="ij")).reshape(2, -1).T
        grid = {p: (float(bounds[j, 0]), float(bounds[j, 1]), int(config.grid_points)) for j, p in enumerate(params)}
        window = config.window * half if config.window > 0 else None
        r = contour_agreement(
            model, truth, truths, n_events=config.pseudo_events, grid=grid, window=window, seed=seed + 4
        )
        results["inference"], verdicts["inference"] = r, grade_contours(r, t)
        save(plot_contour_agreement(r, trained_points=distinct), "inference")

    def training() -> None:
        from ..plots_validation import plot_training_history

        if model.history is not None and model.history.val_loss:
            save(plot_training_history(model.history), "training")

    steps: list[tuple[str, Callable[[], None]]] = [
        ("sampling the model", sample_model),
        ("1-D marginals", marginals),
        ("2-D pull maps", pairs),
    ]
    if config.c2st_events > 0:
        steps.append(("classifier test", classifier))
    else:
        verdicts["c2st"] = (SKIP, "classifier test not run (ReportConfig.c2st_events = 0)")
    if truth is not None:
        steps.append(("KL gap", kl))
    else:
        verdicts["kl_gap"] = (SKIP, "no true density given (only the toy has one: --truth toy)")
    steps += [("parameter dependence", dependence), ("mixture", mixture), ("training history", training)]
    if truth is not None and k == 2 and config.pseudo_points > 0:
        steps.append(("inference (Fig. 15)", inference))
    else:
        why = "no true density given" if truth is None else f"needs two parameters, the model has {k}"
        why = why if config.pseudo_points > 0 or truth is None else "ReportConfig.pseudo_points = 0"
        verdicts["inference"] = (SKIP, f"model-vs-truth contours not run: {why}")

    caught: list[str] = []
    bar = progress_bar(steps, progress=progress, desc="report", unit="step")
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        for label, step in bar:
            bar.set_postfix_str(label)
            step()
    for w in recorded:
        text = f"{w.category.__name__}: {w.message}"
        if text not in caught:
            caught.append(text)
    order = ("kl_gap", "c2st", "inference", "marginals_data", "marginals_latent", "pairs")  # headline first
    verdicts = {key: verdicts[key] for key in sorted(verdicts, key=order.index)}
    verdict = worst(*(v for v, _ in verdicts.values()))
    metrics = {key: r.summary() for key, r in results.items()}
    seconds = time.perf_counter() - tic
    inputs = {
        "reference_events": N,
        "reference_theta": theta_note,
        "reference_points": None if distinct is None else len(distinct),
        "model_events": int(state["x_model"].shape[0]),
        "truth": None if truth is None else repr(truth),
        "observables": names,
        "params": params,
        "seed": seed,
        "machine": machine(),
        "seconds": seconds,
    }
    summary = {
        "verdict": verdict,
        "verdicts": {key: {"verdict": v, "line": line} for key, (v, line) in verdicts.items()},
        "metrics": metrics,
        "thresholds": asdict(t),
        "figures": [p.name for p in figures],
        "warnings": caught,
        "inputs": inputs,
    }
    write_json(out / "summary.json", summary)
    write_json(out / "details.json", {key: r.to_dict() for key, r in results.items()})
    (out / "summary.md").write_text(markdown(summary, model.n_parameters), encoding="utf-8")
    return ReportResult(
        out_dir=out,
        verdict=verdict,
        verdicts=verdicts,
        metrics=metrics,
        figures=tuple(figures),
        warnings=tuple(caught),
        seconds=seconds,
    )
