"""The report's steps, in order: each takes the shared :class:`~gmmpyro.report.context.ReportContext`.

A step adds results, verdicts and figures to the context. :data:`STEPS` lists them with the
condition under which a step is skipped, and the metric then marked ``SKIP``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .context import ReportContext
from .grading import grade_c2st, grade_contours, grade_kl, grade_marginals, grade_pairs

__all__ = ["STEPS", "Step"]

_PAPER_TRUTHS = 0.8 / 1.5  # the paper's true points ±0.8 on a ±1.5 training range (Fig. 15)
_SPREAD = 2 / 3  # θ points of the dependence and mixture figures: ±1 on the toy's ±1.5 (a grid value)


def sample_model(ctx: ReportContext) -> None:
    """Draw the model events compared with the reference, at the reference's ``θ``."""
    N, config = ctx.x_ref.shape[0], ctx.config
    if config.model_samples >= N:
        reps, rows = max(1, round(config.model_samples / N)), np.arange(N)
    else:
        reps, rows = 1, np.sort(ctx.rng.choice(N, config.model_samples, replace=False))
    theta_rows = ctx.theta_ref_rows[rows].to(ctx.model.dtype)
    x_model = ctx.model.sample(reps, theta_rows, seed=ctx.seed).reshape(-1, len(ctx.names)).double()
    ctx.x_model = x_model  # reps·rows d
    ctx.theta_model = theta_rows.double().repeat(reps, 1)  # reps·rows k


def marginals(ctx: ReportContext) -> None:
    """1-D marginals on the data space and on the latent space."""
    from ..plotting import plot_marginals
    from ..validation import compare_marginals

    model, t = ctx.model, ctx.config.thresholds
    r = compare_marginals(ctx.x_model, ctx.x_ref, observables=model.observables, bins=ctx.config.bins)
    ctx.results["marginals_data"], ctx.verdicts["marginals_data"] = r, grade_marginals(r, t)
    ctx.save(plot_marginals(r), "marginals_data")
    u_model = model.projection.forward(ctx.x_model, check=False)
    u_ref = model.projection.forward(ctx.x_ref, check=False)
    lo, hi = model.latent_range
    ranges = [(lo, hi) if o.bounded and not o.discrete else None for o in model.observables]
    latent = [o if o.discrete else o.name for o in model.observables]  # discrete ones are not projected
    r = compare_marginals(u_model, u_ref, observables=latent, bins=ctx.config.bins, ranges=ranges, space="latent")
    ctx.results["marginals_latent"], ctx.verdicts["marginals_latent"] = r, grade_marginals(r, t)
    ctx.save(plot_marginals(r), "marginals_latent")


def pairs(ctx: ReportContext) -> None:
    """2-D marginals of reference and model, and their pull map."""
    from ..plotting import plot_pairs
    from ..validation import compare_pairs

    r = compare_pairs(ctx.x_model, ctx.x_ref, observables=ctx.model.observables, bins=ctx.config.bins_2d)
    ctx.results["pairs"], ctx.verdicts["pairs"] = r, grade_pairs(r, ctx.config.thresholds)
    for show in ("reference", "model", "pull"):
        ctx.save(plot_pairs(r, show=show), f"pairs_{show}")


def classifier(ctx: ReportContext) -> None:
    """The classifier two-sample test, model events against the reference (with ``θ`` if it varies)."""
    from ..validation import c2st

    config = ctx.config
    with_theta = len(np.unique(ctx.theta_ref_rows.numpy(), axis=0)) > 1
    r = c2st(
        ctx.x_model, ctx.x_ref, theta_a=ctx.theta_model if with_theta else None,
        theta_b=ctx.theta_ref_rows if with_theta else None, names=ctx.names, n_folds=config.c2st_folds,
        max_events=config.c2st_events, classifier=config.classifier, seed=ctx.seed,
    )  # fmt: skip
    ctx.results["c2st"], ctx.verdicts["c2st"] = r, grade_c2st(r, config.thresholds, graded=config.c2st_graded)


def kl(ctx: ReportContext) -> None:
    """The KL gap between the truth and the model, on events drawn from the truth."""
    from ..validation import kl_gap

    N, truth = ctx.x_ref.shape[0], ctx.truth
    rows = np.sort(ctx.rng.choice(N, min(N, ctx.config.kl_events), replace=False))
    theta_rows = ctx.theta_ref_rows[rows].to(truth.dtype)
    x_true = truth.sample(1, theta_rows, seed=ctx.seed + 1).reshape(len(rows), -1)
    r = kl_gap(ctx.model, truth, x_true, theta_rows, params=ctx.params)
    ctx.results["kl_gap"], ctx.verdicts["kl_gap"] = r, grade_kl(r, ctx.config.thresholds)


def dependence(ctx: ReportContext) -> None:
    """``p(x|θ)/p(x|θ_ref)`` of the model, reweighted, against the truth's and the simulation's."""
    from ..plotting import plot_parameter_dependence
    from ..validation import reweighted_dependence, simulated_dependence

    n, seed = ctx.config.reweight_events, ctx.seed
    theta_ref = ctx.snap(ctx.reference_point[None])[0]
    points = _dependence_points(ctx, theta_ref)
    r = reweighted_dependence(ctx.model, theta_ref, points, n=n, seed=seed + 2)
    ctx.results["dependence_model"] = r
    compare = []
    if ctx.truth is not None:
        rt = reweighted_dependence(ctx.truth, theta_ref, points, n=n, edges=r.edges, source="truth", seed=seed + 3)
        ctx.results["dependence_truth"] = rt
        compare.append(rt)
    at_ref = np.all(np.abs(ctx.theta_ref_rows.numpy() - theta_ref) <= 1e-6, axis=1)
    if ctx.distinct is not None and at_ref.any() and len(ctx.distinct) > 1:
        rs = simulated_dependence(
            ctx.x_ref, ctx.theta_ref_rows, theta_ref, points, edges=r.edges, names=ctx.names, params=ctx.params
        )
        ctx.results["dependence_simulated"] = rs
        compare.append(rs)
    for name in ctx.names:
        ctx.save(plot_parameter_dependence(r, observable=name, compare=compare), f"dependence_{name}")


def _others(ctx: ReportContext, base: np.ndarray, j: int) -> np.ndarray:
    """The two of ``centre_j + (-s, 0, s)·half_j`` farthest from ``base_j``: both differ from it."""
    values = ctx.centre[j] + np.array([-_SPREAD, 0.0, _SPREAD]) * ctx.half[j]
    return np.sort(values[np.argsort(-np.abs(values - base[j]), kind="stable")[:2]])


def _dependence_points(ctx: ReportContext, theta_ref: np.ndarray) -> np.ndarray:
    """θ points, shape ``(G, k)``: a 3 × 3 grid around the centre for up to two parameters, else
    ``θ_ref`` and one parameter at a time moved away from it (snapped onto the reference's values).
    """
    k = len(ctx.params)
    if k <= 2:
        offsets = np.array(np.meshgrid(*[[-_SPREAD, 0.0, _SPREAD]] * k, indexing="ij")).reshape(k, -1).T
        return ctx.snap(ctx.centre + offsets * ctx.half)
    points = np.repeat(theta_ref[None], 2 * k + 1, axis=0)  # 2k+1 k
    for j in range(k):
        points[2 * j + 1 : 2 * j + 3, j] = _others(ctx, theta_ref, j)
    return ctx.snap(points)


def _mixture_points(ctx: ReportContext) -> np.ndarray:
    """Three distinct θ, shape ``(3, k)``: ``θ_ref`` and two values of the first parameter that
    stays distinct once snapped onto the reference's values (else of the first, unsnapped)."""
    theta_ref = ctx.snap(ctx.reference_point[None])[0]
    first = None
    for j in range(len(ctx.params)):
        points = np.repeat(theta_ref[None], 3, axis=0)  # 3 k
        points[1:, j] = _others(ctx, theta_ref, j)
        first = points if first is None else first
        snapped = ctx.snap(points)
        if len(snapped) == 3:
            return snapped
    return first


def mixture(ctx: ReportContext) -> None:
    """The first observable's mixture and its Gaussian components at three ``θ`` (continuous ones only)."""
    from ..plotting import plot_mixture

    model = ctx.model
    first = model.order[0]
    if model.observables[first].discrete:
        return
    points = _mixture_points(ctx)
    ctx.save(plot_mixture(model, first, points, reference=(ctx.x_ref, ctx.theta_ref_rows)), "mixture")


def training_history(ctx: ReportContext) -> None:
    """Loss and learning rate per epoch, if the model keeps its training history."""
    from ..plotting import plot_training_history

    history = ctx.model.history
    if history is not None and history.val_loss:
        ctx.save(plot_training_history(history), "training")


def inference(ctx: ReportContext) -> None:
    """Fig. 15: profile-likelihood regions of model and truth on pseudo-datasets drawn from the truth.

    The first two parameters are scanned; any others are profiled (or held at their true value,
    ``ReportConfig.nuisance = "fix"``), their true value the reference events' if they all share
    one, else the centre of the training range.
    """
    from ..plotting import plot_contour_agreement
    from ..validation import contour_agreement

    config, centre, half, bounds = ctx.config, ctx.centre[:2], ctx.half[:2], ctx.bounds
    scanned, others = ctx.params[:2], ctx.params[2:]
    profiled, fixed_names = (others, ()) if config.nuisance == "profile" else ((), others)
    values = [centre + f * half for f in np.linspace(-_PAPER_TRUTHS, _PAPER_TRUTHS, config.pseudo_points)]
    if config.pseudo_points == 1:
        values = [centre]
    truths = np.array(np.meshgrid(*[[v[j] for v in values] for j in range(2)], indexing="ij")).reshape(2, -1).T
    true_others = ctx.reference_point[2:]
    truths = np.column_stack([truths, np.broadcast_to(true_others, (len(truths), len(true_others)))])  # P k
    grid = {p: (float(bounds[j, 0]), float(bounds[j, 1]), int(config.grid_points)) for j, p in enumerate(scanned)}
    window = config.window * half if config.window > 0 else None
    r = contour_agreement(
        ctx.model, ctx.truth, truths, n_events=config.pseudo_events, grid=grid, window=window, profile=profiled,
        fix=fixed_names, seed=ctx.seed + 4,
    )  # fmt: skip
    true_values = dict(zip(others, true_others.tolist(), strict=True))
    ctx.results["inference"] = r
    ctx.verdicts["inference"] = grade_contours(r, config.thresholds, true_values=true_values)
    trained = None if ctx.distinct is None else np.unique(ctx.distinct[:, :2], axis=0)
    ctx.save(plot_contour_agreement(r, trained_points=trained), "inference")


def _without_classifier(ctx: ReportContext) -> str | None:
    if ctx.config.c2st_events <= 0:
        return "classifier test not run (ReportConfig.c2st_events = 0)"
    return None


def _without_truth(ctx: ReportContext) -> str | None:
    return "no true density given (only the toy has one: --truth toy)" if ctx.truth is None else None


def _without_contours(ctx: ReportContext) -> str | None:
    truth, k, points = ctx.truth, len(ctx.params), ctx.config.pseudo_points
    if truth is not None and k >= 2 and points > 0:
        return None
    why = "no true density given" if truth is None else f"needs at least two parameters, the model has {k}"
    why = why if points > 0 or truth is None else "ReportConfig.pseudo_points = 0"
    return f"model-vs-truth contours not run: {why}"


@dataclass(frozen=True)
class Step:
    """One step of the report.

    Arguments:
        label: what the progress bar shows while it runs.
        run: the step.
        skipped: the reason not to run it for a context, or ``None`` to run it.
        metric: the verdict marked ``SKIP`` (with that reason) when it does not run.
    """

    label: str
    run: Callable[[ReportContext], None]
    skipped: Callable[[ReportContext], str | None] | None = None
    metric: str | None = None


STEPS = (
    Step("sampling the model", sample_model),
    Step("1-D marginals", marginals),
    Step("2-D pull maps", pairs),
    Step("classifier test", classifier, _without_classifier, "c2st"),
    Step("KL gap", kl, _without_truth, "kl_gap"),
    Step("parameter dependence", dependence),
    Step("mixture", mixture),
    Step("training history", training_history),
    Step("inference (Fig. 15)", inference, _without_contours, "inference"),
)
"""Every step, in the order they run (the model events of the first are used by the others)."""
