"""Model vs reference profile-likelihood regions on many pseudo-datasets, as Dask tasks: :func:`contour_agreement`."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..validation.contours import _axis, _grid_spec
from ._checks import check_simulator, count, describe, model_params
from ._datasets import AgreementSpec, columns, run_batch
from ._runner import run_campaign
from .agreement_result import AgreementResult

__all__ = ["contour_agreement"]

_FORMAT = 1  # of the per-dataset rows a campaign stores; part of its settings


def _truths(truths: Any, params: tuple[str, ...], bounds: np.ndarray) -> tuple[tuple[float, ...], ...]:
    values = torch.as_tensor(truths, dtype=torch.float64).detach().cpu()
    if values.dim() == 1:
        values = values[None]
    if values.dim() != 2 or values.shape[1] != len(params) or values.shape[0] == 0:
        raise ValueError(
            f"truths must have shape (P, {len(params)}) (one value per parameter {params}), got {tuple(values.shape)}"
        )
    for p, point in enumerate(values.tolist()):
        for n, v, (lo, hi) in zip(params, point, bounds, strict=True):
            if not lo <= v <= hi:
                raise ValueError(f"truths[{p}]: {n} = {v:g} lies outside the model's theta_bounds [{lo:g}, {hi:g}]")
    return tuple(tuple(point) for point in values.tolist())


def _names(names: Iterable[str] | None, what: str, params: tuple[str, ...], scanned: tuple[str, ...]) -> tuple:
    if isinstance(names, str):
        raise TypeError(f"{what} must be a sequence of names, got the string {names!r}; write [{names!r}]")
    names = tuple(names or ())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"{what}: unknown parameter(s) {unknown}; the model's parameters are {params}")
    both = [n for n in names if n in scanned]
    if both:
        raise ValueError(f"{what}: parameter(s) {both} are scanned; the grid names {scanned}")
    return names


def _window(window: float | Sequence[float] | None) -> tuple[float, float] | None:
    if window is None:
        return None
    values = np.broadcast_to(np.asarray(window, dtype=float), (2,))
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"window must be positive (one value or one per scanned parameter) or None, got {window!r}")
    return (float(values[0]), float(values[1]))


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """Mean of the finite ``values`` and its standard error ``s/√n`` (NaN with fewer than two)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    error = float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else math.nan
    return float(finite.mean()), error


def _summary(spec: AgreementSpec, rows: list[dict[str, Any]], n_datasets: int) -> AgreementResult:
    rows = sorted(rows, key=lambda r: (r["point"], r["dataset"]))
    table = {c: np.array([r[c] for r in rows]) for c in columns(spec)}
    for c in ("status", "message"):
        table[c] = table[c].astype(str)
    P = len(spec.truths)
    stats = {key: np.full(P, np.nan) for key in ("iou_68", "iou_95", "mle_distance")}
    errors = {key: np.full(P, np.nan) for key in stats}
    counts = {key: np.zeros(P, dtype=np.int64) for key in ("n_done", "n_failed", "n_clipped")}
    for p in range(P):
        mine = table["point"] == p
        ok = mine & (table["status"] == "ok")
        counts["n_done"][p], counts["n_failed"][p] = ok.sum(), (mine & ~ok).sum()
        counts["n_clipped"][p] = (ok & table["clipped"]).sum()
        for key in stats:
            stats[key][p], errors[key][p] = _mean_and_error(table[key][ok])
    return AgreementResult(
        params=spec.scanned,
        model_params=spec.params,
        truths=np.array(spec.truths),
        profiled=spec.profile,
        fixed=spec.fix,
        n_datasets=n_datasets,
        n_events=spec.n_events,
        iou_68_error=errors["iou_68"],
        iou_95_error=errors["iou_95"],
        mle_distance_error=errors["mle_distance"],
        datasets=table,
        **stats,
        **counts,
    )


def contour_agreement(
    model: Any,
    reference: Any,
    truths: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
    n_datasets: int,
    n_events: int,
    *,
    grid: Mapping[str, tuple[float, float, int] | Sequence[float]] | None = None,
    window: float | Sequence[float] | None = None,
    profile: Iterable[str] = (),
    fix: Iterable[str] | None = None,
    n_starts: int = 4,
    refine: int = 8,
    client: Any | None = None,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    batch_size: int | None = None,
) -> AgreementResult:
    """Do a model and a reference density give the same profile-likelihood regions? Many pseudo-datasets per point.

    The check of journal Fig. 15, repeated over ``n_datasets`` pseudo-datasets per true point
    and run as Dask tasks. Dataset ``j`` of true point ``p`` draws ``n_events`` events from
    ``reference.sample(n_events, truths[p], seed=s)``, ``s`` derived from ``(seed, p, j)``
    (``numpy.random.SeedSequence``; the fits' random starts get a second stream of the same
    origin); :func:`gmmpyro.validation.contour_agreement` scans both densities on that dataset
    (same grid, global fits within the model's ``theta_bounds``) and measures the intersection
    over union of their 68 % and 95 % Wilks regions (``Δq`` of two degrees of freedom) and the
    distance between their MLEs. Per true point the result holds the means over datasets with
    their standard errors, and how many datasets failed (a scan raised; left out of the means)
    or had a 95 % region cut by the grid's edge (kept; widen ``window`` or ``grid``).

    The numbers of a dataset depend on ``(seed, p, j)`` only: not on the number of workers,
    the batching, the order, or ``n_datasets`` (a larger campaign extends a smaller one). Dask,
    the local cluster started without ``client``, and storage with resume (``out``) work as in
    :func:`~gmmpyro.campaigns.interval_coverage.coverage`: every finished batch is written at
    once to Parquet, one row per dataset; a rerun with the same ``out`` runs only the datasets
    not stored, counts every dataset once, and refuses other settings (model, reference,
    truths, ``n_events``, grid, ``window``, ``profile``, ``fix``, ``n_starts``, ``refine``,
    ``seed``) with a ``ValueError`` naming the file.

    Arguments:
        model: the :class:`~gmmpyro.protocols.ConditionalDensity` under test.
        reference: the reference density with the same parameters (e.g. the exact
            :class:`~gmmpyro.toy.ToyModel`); draws the datasets, ``sample(n, theta (k,), seed=) -> (n, d)``.
        truths: the true points, shape ``(P, k)`` (or ``(k,)`` for one), in ``model.params`` order.
        n_datasets: pseudo-datasets per true point.
        n_events: events per pseudo-dataset.
        grid: ``{name: (lo, hi, n)}`` or ``{name: values}`` for the two scanned parameters;
            default both parameters of a two-parameter model over its ``theta_bounds``, 61 points.
        window: half-width of each dataset's grid around its true point, one value or one per
            scanned parameter (as many points as ``grid``, clipped to its range); ``None`` scans
            ``grid`` itself. A few hundred events give regions far smaller than the parameter
            range: a window resolves them at the same cost.
        profile: parameters minimised at every grid point.
        fix: parameters held at each dataset's true value (cheaper than profiling).
        n_starts: starting points of each global fit.
        refine: grid subdivisions for the IoU.
        client: a ``distributed.Client``, or ``None`` for a local cluster of processes.
        out: Parquet file (``*.parquet``) or directory to store the datasets' rows in and resume from.
        seed: the campaign's seed.
        progress: show a progress bar over the datasets.
        batch_size: datasets per Dask task (default: about four tasks per worker thread).

    Returns:
        An :class:`~gmmpyro.campaigns.agreement_result.AgreementResult`.

    Raises:
        ImportError: ``distributed`` (or, with ``out``, ``pyarrow``) is missing:
            ``pip install "gmmpyro[distributed]"``.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> toy, grid = ToyModel(), {"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}
        >>> result = contour_agreement(toy, toy, [[0.8, -0.5]], 4, 400, grid=grid, window=0.5,
        ...                            progress=False)  # doctest: +SKIP
        >>> result.iou_68, result.n_done  # the same density: identical regions  # doctest: +SKIP
        (array([1.]), array([4]))
    """
    n_datasets = count(n_datasets, "n_datasets", 1)
    n_events = count(n_events, "n_events", 1)
    n_starts = count(n_starts, "n_starts", 1)
    refine = count(refine, "refine", 1)
    seed = count(seed, "seed", 0)
    if batch_size is not None:
        batch_size = count(batch_size, "batch_size", 1)
    params = model_params(model)
    if model_params(reference, "reference") != params:
        raise ValueError(f"model parameters {params} and reference parameters {tuple(reference.params)} differ")
    bounds = torch.as_tensor(model.theta_bounds, dtype=torch.float64).detach().cpu().numpy()
    points = _truths(truths, params, bounds)
    axes = {n: tuple(float(v) for v in _axis(a)) for n, a in _grid_spec(model, grid, list(params)).items()}
    for n, a in axes.items():
        if len(a) < 2 or not (np.all(np.isfinite(a)) and np.all(np.diff(a) > 0)):
            raise ValueError(f"grid {n!r}: the axis must hold at least 2 finite, strictly increasing values, got {a}")
    scanned = tuple(axes)
    profile = _names(profile, "profile", params, scanned)
    fix = _names(fix, "fix", params, scanned)
    if set(profile) & set(fix):
        raise ValueError(f"parameter(s) {sorted(set(profile) & set(fix))} cannot be both profiled and fixed")
    spec = AgreementSpec(
        model=model,
        reference=reference,
        params=params,
        scanned=scanned,
        truths=points,
        n_events=n_events,
        grid=axes,
        window=_window(window),
        profile=profile,
        fix=fix,
        n_starts=n_starts,
        refine=refine,
        seed=seed,
    )
    theta = torch.tensor(points[0], dtype=reference.dtype, device=reference.device)  # k
    check_simulator(reference, theta, len(model.observables), seed, what="reference")

    settings = {
        "format": _FORMAT,
        "campaign": "contour_agreement",
        "model": describe(model),
        "reference": describe(reference),
        "params": list(params),
        "truths": [list(p) for p in points],
        "n_events": n_events,
        "grid": {n: list(a) for n, a in axes.items()},
        "window": spec.window,
        "profile": list(profile),
        "fix": list(fix),
        "n_starts": n_starts,
        "refine": refine,
        "seed": seed,
    }
    rows = run_campaign(
        run_batch, spec, n_datasets * len(points), settings=settings, columns=columns(spec), out=out,
        client=client, batch_size=batch_size, progress=progress, name="contour_agreement", unit="dataset",
    )  # fmt: skip
    return _summary(spec, rows, n_datasets)
