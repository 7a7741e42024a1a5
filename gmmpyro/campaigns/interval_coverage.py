r"""Frequentist coverage of profile-likelihood intervals by pseudo-experiments run as Dask tasks: :func:`coverage`."""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..inference.fit_config import FitConfig
from ..inference.wilks import delta_q
from ._checks import check_simulator, count, describe, model_params
from ._runner import run_campaign
from ._toys import JOINT, ToySpec, cl_tag, columns, global_observable_location, run_batch
from .result import CoverageResult

__all__ = ["CoverageResult", "coverage"]

_FORMAT = 1  # of the per-toy rows a campaign stores; part of its settings


def _theta_true(theta_true: Any, params: tuple[str, ...], bounds: Mapping[str, tuple[float, float]]) -> tuple:
    if isinstance(theta_true, Mapping):
        unknown = sorted(set(theta_true) - set(params))
        missing = [n for n in params if n not in theta_true]
        if unknown or missing:
            raise ValueError(
                f"theta_true: unknown parameter(s) {unknown}, missing {missing}; the model's parameters are {params}"
            )
        values = [theta_true[n] for n in params]
    else:
        values = torch.as_tensor(theta_true, dtype=torch.float64).detach().cpu()
        if values.shape != (len(params),):
            raise ValueError(
                f"theta_true must hold one value per parameter {params} (shape ({len(params)},)), "
                f"got shape {tuple(values.shape)}"
            )
        values = values.tolist()
    values = tuple(float(v) for v in values)
    for n, v in zip(params, values, strict=True):
        lo, hi = bounds[n]
        if not lo <= v <= hi:
            raise ValueError(f"theta_true: {n} = {v:g} lies outside the model's theta_bounds [{lo:g}, {hi:g}]")
    return values


def _profile(profile: Iterable[str], params: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(profile, str):
        raise TypeError(f"profile must be a sequence of names, got the string {profile!r}; write [{profile!r}]")
    profile = tuple(profile)
    unknown = [n for n in profile if n not in params]
    if unknown:
        raise ValueError(f"profile: unknown parameter(s) {unknown}; the model's parameters are {params}")
    if len(set(profile)) != len(profile):
        raise ValueError(f"profile: repeated parameter names in {profile}")
    tested = tuple(n for n in params if n not in profile)
    if not tested:
        raise ValueError(f"profile: every parameter {params} is profiled; leave at least one to test")
    if JOINT in params:
        raise ValueError(f"a parameter named {JOINT!r} clashes with the joint test's columns; rename it")
    return profile, tested


def _constraints(constraints: Mapping | None, params: tuple[str, ...]) -> tuple:
    out = []
    for key, dist in (constraints or {}).items():
        names = (key,) if isinstance(key, str) else tuple(key)
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ValueError(f"constraints: unknown parameter(s) {unknown}; the model's parameters are {params}")
        if not callable(getattr(dist, "log_prob", None)):
            raise TypeError(f"constraint on {key!r} must be a distribution with log_prob, got {dist!r}")
        global_observable_location(dist, names)  # a ValueError for families it cannot fluctuate
        out.append((names, dist))
    return tuple(out)


def _levels(cl: float | Sequence[float]) -> tuple[float, ...]:
    levels = (cl,) if isinstance(cl, numbers.Real) else tuple(cl)
    if not levels:
        raise ValueError("cl: give at least one confidence level")
    for c in levels:
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < 1:
            raise ValueError(f"cl: levels must lie in (0, 1), got {c!r}")
    return tuple(float(c) for c in levels)


def _summary(spec: ToySpec, rows: list[dict[str, Any]], n_toys: int) -> CoverageResult:
    rows = sorted(rows, key=lambda r: r["toy"])
    cols = columns(spec)
    table = {c: np.array([r[c] for r in rows]) for c in cols}
    for c in ("status", "message"):
        table[c] = table[c].astype(str)
    ok = table["status"] != "failed"
    n_done = int(ok.sum())

    def rate(name: str) -> tuple[np.ndarray, np.ndarray]:
        if not n_done:
            return np.full(len(spec.cl), np.nan), np.full(len(spec.cl), np.nan)
        p = np.array([table[f"covered_{name}_{cl_tag(c)}"][ok].mean() for c in spec.cl])
        return p, np.sqrt(p * (1 - p) / n_done)

    per = [rate(n) for n in spec.tested]
    joint = rate(JOINT)
    return CoverageResult(
        params=spec.tested,
        cl=spec.cl,
        theta_true=spec.truth,
        n_events=spec.n_events,
        coverage=np.array([p for p, _ in per]),
        error=np.array([e for _, e in per]),
        joint_coverage=joint[0],
        joint_error=joint[1],
        n_toys=n_toys,
        n_done=n_done,
        n_unconverged=int((table["status"] == "unconverged").sum()),
        n_failed=len(rows) - n_done,
        toys=table,
    )


def coverage(
    model: Any,
    theta_true: Sequence[float] | Mapping[str, float] | torch.Tensor,
    n_toys: int,
    n_events: int,
    *,
    simulator: Any | None = None,
    profile: Iterable[str] = (),
    constraints: Mapping[str | tuple[str, ...], torch.distributions.Distribution] | None = None,
    cl: float | Sequence[float] = (0.68, 0.95),
    client: Any | None = None,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    config: FitConfig | None = None,
    batch_size: int | None = None,
) -> CoverageResult:
    r"""Coverage of profile-likelihood intervals, by ``n_toys`` pseudo-experiments run as Dask tasks.

    Toy ``i`` draws ``n_events`` events at ``theta_true`` with ``simulator.sample(n_events,
    theta_true, seed=seed + i)`` and, for each constraint, a global observable (below); fits
    the model (:func:`~gmmpyro.inference.fit.fit`, bounds = the model's ``theta_bounds``,
    first start at the truth); and for each tested parameter ``θ_j`` (every one not in
    ``profile``) computes the likelihood ratio at the truth with all other parameters profiled,

    .. math::
        q_j = -2 \ln L(θ_j^{true}, \hat{\hat ψ}) + 2 \ln L(\hat θ, \hat ψ).

    The Wilks interval ``{θ_j : q_j(θ_j) < Δq(cl, 1)}`` of a profile scan contains the truth
    exactly when ``q_j(θ_j^{true}) < Δq(cl, 1)`` (:func:`~gmmpyro.inference.wilks.delta_q`),
    so one conditional fit decides it: exact (no grid, no interpolation) and far cheaper than a
    scan. The joint test fixes all tested parameters at once (``Δq`` with that many degrees of
    freedom): does the Wilks region (a 2-D contour for two) contain the truth? A conditional fit
    that ends below the global fit restarts the global fit from there, so ``q ≥ 0``.

    A toy whose fits end with finite ``-2 ln L`` counts, also when a fit stops short of
    :func:`~gmmpyro.inference.fit.fit`'s convergence test (``status = "unconverged"``, counted in
    ``n_unconverged``): that happens where the minimum sits on a cusp of the likelihood (the
    toy's density depends on ``|c|``, so near ``c = 0`` the gradient does not vanish at the
    minimum), and leaving those toys out would select the toys that cover least. Toys with a
    numerical error or a non-finite ``-2 ln L`` are ``"failed"``: counted in ``n_failed`` and
    left out. The per-toy table allows any other selection.

    Constraints and global observables: a constraint ``π(ν) = f(a₀ - ν)``, ``f`` symmetric about
    the constraint's ``loc = a₀`` (``Normal(0, 1)``: an auxiliary measurement ``a₀ = 0`` of ``ν``
    with unit resolution), is the likelihood of that measurement. Each toy draws its own
    ``a ~ f(a - ν_true)`` and fits with ``f(a - ν)`` — the unconditional ensemble that pyhf's
    toys sample (auxiliary data drawn around the true parameters), under which the profile
    likelihood ratio is asymptotically χ². Holding ``a = a₀`` in every toy instead would test
    a different (conditional) ensemble. The draws are in the table's ``glob_<name>`` columns.

    Dask: toys run in batches of ``batch_size`` per task (default: about four tasks per worker
    thread, at most 50 toys each). The model, simulator and settings are sent once, as one
    task that the other workers copy (it is recomputed if all its holders die); a worker lost
    mid-task has its batch rerun elsewhere. With ``client=None`` a ``LocalCluster`` of
    ``os.cpu_count()`` processes with one thread each (torch set to one thread) is started and
    closed at the end; any ``distributed.Client`` (a laptop cluster, dask-jobqueue on
    SLURM/HTCondor) is used as it is. Toy ``i`` depends only on ``seed + i``, so results do not
    depend on the number of workers, batching or order. The model and simulator must pickle
    (:class:`~gmmpyro.model.DensityModel` and :class:`~gmmpyro.toy.ToyModel` do).

    Storage and resume: with ``out``, each finished batch is written at once (atomically) to
    a Parquet file (``out`` ending in ``.parquet``, rewritten per batch) or directory (one file
    per batch), one row per toy, with the campaign's settings in the schema metadata. Run again
    with the same ``out`` and the toys stored are read back instead of run (an interrupted
    campaign continues; a larger ``n_toys`` extends it; a smaller one uses the first toys):
    every toy counted once. Other settings than those stored (model, simulator, truth,
    ``n_events``, ``profile``, constraints, ``cl``, ``seed``, ``config``) raise a ``ValueError``
    naming the file.

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity` with ``theta_bounds``.
        theta_true: the true parameters, shape ``(k,)`` in ``model.params`` order, or ``{name: value}``.
        n_toys: number of pseudo-experiments.
        n_events: events per pseudo-experiment.
        simulator: draws the events, ``simulator.sample(n, theta (k,), seed=) -> (n, d)``;
            default: the model itself.
        profile: nuisance parameters, minimised in every test and not tested themselves.
        constraints: ``{name: distribution}`` constraint terms, as :func:`~gmmpyro.inference.fit.fit`
            takes them (a tuple of names for a joint one); location families symmetric about
            ``loc`` (Normal, Laplace, Cauchy, StudentT, MultivariateNormal), see above.
        cl: confidence level(s); ``0.68`` means one sigma (0.6827).
        client: a ``distributed.Client``, or ``None`` for a local cluster of processes.
        out: Parquet file (``*.parquet``) or directory to store the toys in and resume from.
        seed: toy ``i`` uses ``seed + i``.
        progress: show a progress bar over the toys.
        config: the fits' settings (:class:`~gmmpyro.inference.fit_config.FitConfig`), used
            for the global and the conditional fits.
        batch_size: toys per Dask task.

    Returns:
        A :class:`~gmmpyro.campaigns.result.CoverageResult`.

    Raises:
        ImportError: ``distributed`` (or, with ``out``, ``pyarrow``) is missing:
            ``pip install "gmmpyro[distributed]"``.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> result = coverage(ToyModel(), [0.8, -0.8], n_toys=4, n_events=100, progress=False)  # doctest: +SKIP
        >>> result.coverage.shape, result.n_done  # doctest: +SKIP
        ((2, 2), 4)
    """
    n_toys = count(n_toys, "n_toys", 1)
    n_events = count(n_events, "n_events", 1)
    seed = count(seed, "seed", 0)
    if batch_size is not None:
        batch_size = count(batch_size, "batch_size", 1)
    if config is None:
        config = FitConfig()
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    params = model_params(model)
    box = torch.as_tensor(model.theta_bounds, dtype=torch.float64).detach().cpu().tolist()
    bounds = {n: (float(lo), float(hi)) for n, (lo, hi) in zip(params, box, strict=True)}
    truth = _theta_true(theta_true, params, bounds)
    profile, tested = _profile(profile, params)
    levels = _levels(cl)
    thresholds = {n: tuple(delta_q(c, 1) for c in levels) for n in tested}
    thresholds[JOINT] = tuple(delta_q(c, len(tested)) for c in levels)
    spec = ToySpec(
        model=model,
        simulator=model if simulator is None else simulator,
        params=params,
        theta_true=truth,
        n_events=n_events,
        tested=tested,
        constraints=_constraints(constraints, params),
        thresholds=thresholds,
        cl=levels,
        seed=seed,
        config=config,
        bounds=bounds,
    )
    theta = torch.tensor(truth, dtype=model.dtype, device=model.device)  # k
    check_simulator(spec.simulator, theta, len(model.observables), seed)

    settings = {
        "format": _FORMAT,
        "campaign": "coverage",
        "model": describe(model),
        "simulator": "model" if simulator is None else describe(simulator),
        "params": list(params),
        "theta_true": dict(zip(params, truth, strict=True)),
        "n_events": n_events,
        "profile": list(profile),
        "constraints": {"/".join(names): repr(dist) for names, dist in spec.constraints},
        "cl": list(levels),
        "seed": seed,
        "config": dataclasses.asdict(config),
    }
    rows = run_campaign(
        run_batch, spec, n_toys, settings=settings, columns=columns(spec), out=out, client=client,
        batch_size=batch_size, progress=progress, name="coverage", unit="toy",
    )  # fmt: skip
    return _summary(spec, rows, n_toys)
