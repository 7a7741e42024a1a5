"""Profile-likelihood scans over one or two parameters: :func:`scan`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..exceptions import ConvergenceWarning, warn
from ..protocols import ConditionalDensity
from .fit import FitResult, _box, _checked, _fit, _likelihood_of, _search_box
from .fit_config import FitConfig
from .likelihood import Likelihood
from .minimize import minimize
from .scan_result import ProfileScan
from .wilks import delta_q

__all__ = ["ProfileScan", "scan"]

GridSpec = Mapping[str, "int | tuple[float, float, int] | Sequence[float] | np.ndarray | torch.Tensor"]

_WINDOW_CL = 0.99  # an automatic window starts wide enough for this region of a Gaussian likelihood ...
_WINDOW_MARGIN = 1.25  # ... times this margin,
_EDGE_CL = 0.95  # and widens while the scanned region of this level reaches an edge of the grid
_MAX_WIDENINGS = 4
_WIDEN = 1.6


def _parse_grid(lik: Likelihood, grid: GridSpec) -> tuple[tuple[str, ...], list[np.ndarray | None]]:
    """The scanned names and their axes (``None`` for an automatic window)."""
    if not isinstance(grid, Mapping) or not 1 <= len(grid) <= 2:
        raise ValueError(f"grid must be a dict of one or two parameters, e.g. {{'cx': (-1, 1, 41)}}, got {grid!r}")
    names = lik.check_names(grid, what="grid")
    axes = []
    for n, spec in grid.items():
        if _is_count(spec):
            if spec < 2:
                raise ValueError(f"grid {n!r}: an automatic window needs n >= 2 points, got {spec}")
            axis = None
        elif isinstance(spec, tuple):
            axis = _linspace_axis(n, spec)
        else:
            if isinstance(spec, list) and _looks_like_range(spec):
                raise ValueError(
                    f"grid {n!r}: {spec} is ambiguous; write (lo, hi, n) as a tuple for n evenly spaced "
                    f"values, or np.array({spec}) for these three values"
                )
            axis = np.array(spec.detach().cpu() if isinstance(spec, torch.Tensor) else spec, dtype=float)
            if axis.ndim != 1 or axis.size < 2 or not np.all(np.isfinite(axis)) or np.any(np.diff(axis) <= 0):
                raise ValueError(
                    f"grid {n!r}: explicit values must be a finite, strictly increasing 1-D array, got {spec!r}"
                )
        axes.append(axis)
    return names, axes


def _is_count(spec) -> bool:
    """``n``: the number of points of an automatic window around the MLE."""
    return isinstance(spec, (int, np.integer)) and not isinstance(spec, bool)


def _window_limits(lik: Likelihood, name: str, bounds: Mapping | None) -> tuple[float, float]:
    """How far an automatic window may reach: the fit's bounds, else the model's parameter range."""
    lo, hi = (float(v) for v in torch.as_tensor(lik.model.theta_bounds)[lik.index(name)].tolist())
    a, b = dict(bounds or {}).get(name, (None, None))
    return (lo if a is None else float(a)), (hi if b is None else float(b))


def _initial_window(mle: FitResult, name: str, n_dims: int, limits: tuple[float, float]) -> tuple[float, float]:
    """``MLE ± margin·√Δq·σ`` (σ from the Hessian), inside ``limits``; all of ``limits`` without a usable σ."""
    centre, sigma = mle.values[name], mle.errors[name]
    if not (math.isfinite(sigma) and sigma > 0):
        return limits
    half = _WINDOW_MARGIN * math.sqrt(delta_q(_WINDOW_CL, n_dims)) * sigma
    return max(limits[0], centre - half), min(limits[1], centre + half)


def _widened(
    result: ProfileScan, windows: dict[str, tuple[float, float]], limits: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]] | None:
    """Wider windows for the sides where the ``_EDGE_CL`` region reaches the grid's edge, or ``None``."""
    threshold = delta_q(_EDGE_CL, len(result.params))
    q = np.where(result.valid, result.q, np.inf)
    out, changed = dict(windows), False
    for axis, name in enumerate(result.params):
        if name not in windows:
            continue
        lo, hi = windows[name]
        width = hi - lo
        sides = np.moveaxis(q, axis, 0)
        new_lo = max(limits[name][0], lo - (_WIDEN - 1) * width) if np.min(sides[0]) < threshold else lo
        new_hi = min(limits[name][1], hi + (_WIDEN - 1) * width) if np.min(sides[-1]) < threshold else hi
        if (new_lo, new_hi) != (lo, hi):
            out[name], changed = (new_lo, new_hi), True
    return out if changed else None


def _linspace_axis(name: str, spec: tuple) -> np.ndarray:
    """``(lo, hi, n)``: ``n`` evenly spaced values; ``n`` must be an integer (``5``, not ``5.0``)."""
    if len(spec) != 3:
        raise ValueError(f"grid {name!r}: a tuple means (lo, hi, n), got {spec!r}; give explicit values as a list")
    lo, hi, num = spec
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)):
        raise ValueError(f"grid {name!r}: n in (lo, hi, n) must be an integer, got {num!r}")
    lo, hi = float(lo), float(hi)
    if num < 2 or not lo < hi or not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"grid {name!r}: (lo, hi, n) needs finite lo < hi and n >= 2, got {spec}")
    return np.linspace(lo, hi, int(num))


def _looks_like_range(values: list) -> bool:
    """Three numbers, the last an integer and the others not: ``[lo, hi, n]`` meant as ``(lo, hi, n)``."""
    if len(values) != 3 or not all(isinstance(v, (int, float, np.number)) for v in values):
        return False
    return isinstance(values[2], (int, np.integer)) and not all(isinstance(v, (int, np.integer)) for v in values)


def _profile_points(
    lik: Likelihood,
    theta: torch.Tensor,
    p_idx: torch.Tensor,
    z0: torch.Tensor,
    rows: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, ...]:
    """Minimise ``-ln L`` over the profiled columns at grid points ``rows``, chunk by chunk."""
    out = []
    for r, z in zip(rows.split(lik.chunk_size), z0.split(lik.chunk_size), strict=True):
        base = theta[r]  # b k

        def nll(zz: torch.Tensor, sub: torch.Tensor, base: torch.Tensor = base) -> torch.Tensor:
            return -lik.log_likelihood(base[sub].index_copy(-1, p_idx, zz))  # b

        res = minimize(nll, z, lo=lo, hi=hi, tol=tol, max_iter=max_iter)
        out.append((res.x, res.fun, res.edm, res.converged, res.n_iter))
    return tuple(torch.cat(parts) for parts in zip(*out, strict=True))


def _neighbours(z: torch.Tensor, ok: torch.Tensor, shape: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each grid direction: the neighbour's solution ``(G, p)`` and whether it is usable ``(G,)``."""
    zg, okg = z.reshape(*shape, -1), ok.reshape(shape)
    out = []
    for axis in range(len(shape)):
        for shift in (1, -1):
            usable = torch.roll(okg, shift, dims=axis)
            edge = [slice(None)] * len(shape)
            edge[axis] = 0 if shift == 1 else -1  # rolled in from the opposite edge: no neighbour
            usable[tuple(edge)] = False
            out.append((torch.roll(zg, shift, dims=axis).reshape(-1, zg.shape[-1]), usable.reshape(-1)))
    return out


def _conditional_fits(
    lik: Likelihood,
    theta: torch.Tensor,
    shape: tuple[int, ...],
    profile: tuple[str, ...],
    bounds: Mapping | None,
    config: FitConfig,
) -> tuple[torch.Tensor, ...]:
    """``-ln L`` at every grid point ``theta (G, k)``, minimised over ``profile``.

    Returns ``theta`` with the conditional fits filled in, ``nll``, ``ok``, ``edm``, ``n_iter``.
    """
    G = theta.shape[0]
    edm = torch.zeros(G, dtype=lik.dtype, device=lik.device)
    n_iter = torch.zeros(G, dtype=torch.long, device=lik.device)
    if not profile:
        with torch.no_grad():
            nll = -lik.log_likelihood(theta)  # G
        return theta, nll, ~(torch.isnan(nll) | torch.isneginf(nll)), edm, n_iter  # ln L = +inf is no valid point
    p_idx = torch.tensor([lik.index(n) for n in profile], device=lik.device)
    lo, hi = _box(lik, profile, bounds)
    rows = torch.arange(G, device=lik.device)
    tol, max_iter = config.tol, config.profile_max_iter
    z, nll, edm, ok, n_iter = _profile_points(lik, theta, p_idx, theta[:, p_idx], rows, lo, hi, tol, max_iter)
    eps = torch.finfo(lik.dtype).eps
    for _ in range(config.refine):  # warm starts from converged neighbours: retry failures, escape local minima
        with torch.no_grad():
            best_f, best_z = torch.full_like(nll, torch.inf), z.clone()
            for zn, usable in _neighbours(z, ok, shape):
                fn = -lik.log_likelihood(theta.index_copy(-1, p_idx, zn))  # G
                better = usable & (fn < best_f)
                best_f, best_z = torch.where(better, fn, best_f), torch.where(better[:, None], zn, best_z)
        margin = torch.clamp(64 * eps * nll.abs(), min=10 * tol)
        retry = torch.isfinite(best_f) & (~ok | (best_f < nll - margin))
        if not retry.any():
            break
        r = retry.nonzero().squeeze(-1)
        z_r, f_r, e_r, ok_r, it_r = _profile_points(lik, theta, p_idx, best_z[r], r, lo, hi, tol, max_iter)
        take = ok_r & (~ok[r] | (f_r < nll[r]))
        r = r[take]
        z[r], nll[r], edm[r], ok[r], n_iter[r] = z_r[take], f_r[take], e_r[take], ok_r[take], it_r[take]
    return theta.index_copy(-1, p_idx, z), nll, ok, edm, n_iter


def _scan(
    lik: Likelihood,
    grid: GridSpec,
    *,
    profile: Iterable[str] | None,
    fixed: Mapping[str, float] | None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    start: Mapping[str, float] | None,
    config: FitConfig,
    mle: FitResult | None = None,
    may_refit: bool | None = None,
) -> ProfileScan:
    """:func:`scan` of a :class:`~gmmpyro.inference.likelihood.Likelihood`.

    ``mle``: a global fit to reuse; ``may_refit``: replace it by a refit from the best grid point
    when the grid finds a lower minimum (default: only a fit made here).
    """
    names, axes = _parse_grid(lik, grid)
    profile = lik.check_names(profile or (), what="profile")
    fixed = {n: float(v) for n, v in (fixed or {}).items()}
    lik.check_names(fixed, what="fixed")
    for a, b, what in (
        (names, profile, "scanned and profiled"),
        (names, fixed, "scanned and fixed"),
        (profile, fixed, "profiled and fixed"),
    ):
        both = sorted(set(a) & set(b))
        if both:
            raise ValueError(f"parameter(s) {both} cannot be both {what}")

    if may_refit is None:
        may_refit = mle is None
    # every parameter scanned or fixed, over the fit's whole search box: the grid does not depend
    # on the global fit and searches for its minimum better than the fit's few starts, so it goes first
    grid_first = (
        mle is None and not start and not profile and set(names) | set(fixed) == set(lik.param_names)
        and all(axis is not None for axis in axes) and math.prod(len(a) for a in axes) >= config.n_starts
        and _covers_search_box(lik, names, axes, bounds)
    )  # fmt: skip
    if mle is None and not grid_first:
        mle = _fit(lik, fixed=fixed, start=start, bounds=bounds, config=config)
    if any(axis is None for axis in axes):
        return _scan_window(lik, grid, profile=profile, fixed=fixed, bounds=bounds, config=config, mle=mle)
    if grid_first:
        base = lik.theta_from({**fixed, **dict.fromkeys(names, 0.0)})  # k; the scanned values follow
    else:
        base = torch.tensor(mle.theta, dtype=lik.dtype, device=lik.device)  # k
    shape = tuple(len(a) for a in axes)
    G, k = math.prod(shape), lik.n_params
    mesh = torch.meshgrid(*[torch.as_tensor(a, dtype=lik.dtype, device=lik.device) for a in axes], indexing="ij")
    g_idx = torch.tensor([lik.index(n) for n in names], device=lik.device)
    theta = base.expand(G, k).index_copy(-1, g_idx, torch.stack([m.reshape(-1) for m in mesh], -1))  # G k
    lik.check_range(theta, what="scan grid points", names=names)
    theta, nll, ok, edm, n_iter = _conditional_fits(lik, theta, shape, profile, bounds, config)
    if profile:
        lik.check_range(theta, what="profiled values", names=profile)

    twice = (2 * nll).detach()
    if grid_first:  # the global fit, from the best grid point (or from its usual starts if none scored)
        best_start = _start_at(lik, theta, twice, ok, fixed, bounds) if ok.any() else None
        one = dataclasses.replace(config, n_starts=1) if best_start is not None else config
        mle = _fit(lik, fixed=fixed, start=best_start, bounds=bounds, config=one)
    margin = max(20 * config.tol, 64 * torch.finfo(lik.dtype).eps * abs(mle.twice_nll))
    lowest = float(twice[ok].min()) if ok.any() else math.inf
    if not grid_first and lowest < mle.twice_nll - margin:
        # the fit missed the global minimum: refit from the best grid point
        best_start = _start_at(lik, theta, twice, ok, fixed, bounds)
        refit = _fit(lik, fixed=fixed, start=best_start, bounds=bounds, config=dataclasses.replace(config, n_starts=1))
        if may_refit and refit.twice_nll < mle.twice_nll - margin:
            # the grid's other parameters sit at (or start from) the global fit's values: redo it
            return _scan(
                lik, grid, profile=profile, fixed=fixed, bounds=bounds, start=None, config=config, mle=refit,
                may_refit=False,
            )  # fmt: skip
    twice_min = mle.twice_nll
    if lowest < mle.twice_nll - margin:
        twice_min = lowest
        warn(
            f"the scan found -2 ln L = {twice_min:.8g} below the global fit's {mle.twice_nll:.8g}; "
            "q is taken relative to the scan's minimum",
            ConvergenceWarning,
        )
    if not ok.all():
        q_grid = (twice - twice_min).reshape(shape).cpu().numpy()
        at_bound = _at_profile_bound(lik, theta, profile, bounds).reshape(shape).cpu().numpy()
        warn(_failed_points_message(ok.reshape(shape).cpu().numpy(), q_grid, at_bound, profile), ConvergenceWarning)
    return ProfileScan(
        params=names,
        grid=dict(zip(names, axes, strict=True)),
        profiled=profile,
        fixed=fixed,
        model_params=lik.param_names,
        q=(twice - twice_min).reshape(shape).cpu().numpy(),
        twice_nll=twice.reshape(shape).cpu().numpy(),
        valid=ok.reshape(shape).cpu().numpy(),
        theta=theta.detach().reshape(*shape, k).cpu().numpy(),
        edm=edm.reshape(shape).cpu().numpy(),
        n_iter=n_iter.reshape(shape).cpu().numpy(),
        twice_nll_min=twice_min,
        mle=mle,
    )


def _covers_search_box(lik: Likelihood, names: tuple[str, ...], axes, bounds: Mapping | None) -> bool:
    """Whether the grid's axes reach the fit's search box (``fit._search_box``)."""
    lows, highs = _search_box(lik, names, *_box(lik, names, bounds))
    for axis, low, high in zip(axes, lows.tolist(), highs.tolist(), strict=True):
        slack = 1e-6 * (high - low)
        if not (float(min(axis)) <= low + slack and float(max(axis)) >= high - slack):
            return False
    return True


def _start_at(
    lik: Likelihood, theta: torch.Tensor, twice: torch.Tensor, ok: torch.Tensor, fixed: Mapping, bounds: Mapping | None
) -> dict[str, float]:
    """The free parameters' values at the lowest valid point of ``theta (G, k)``, as a fit's start.

    A value on (or beyond) a bound of ``bounds`` is moved inside by a thousandth of the interval
    (the fit starts strictly inside its bounds; a grid often ends on one).
    """
    best = theta[torch.where(ok, twice, torch.inf).argmin()]
    free = tuple(n for n in lik.param_names if n not in fixed)
    lo, hi = _box(lik, free, bounds)
    start = {}
    for n, v, a, b in zip(free, best[[lik.index(n) for n in free]].tolist(), lo.tolist(), hi.tolist(), strict=True):
        inset = 1e-3 * ((b - a) if math.isfinite(b - a) else max(1.0, abs(v)))
        start[n] = min(max(v, a + inset), b - inset)
    return start


def _at_profile_bound(
    lik: Likelihood, theta: torch.Tensor, profile: tuple[str, ...], bounds: Mapping | None
) -> torch.Tensor:
    """Whether any profiled parameter of each point ``theta (G, k)`` sits at its bound, shape ``(G,)``."""
    if not profile:
        return torch.zeros(theta.shape[0], dtype=torch.bool, device=theta.device)
    lo, hi = _box(lik, profile, bounds)
    z = theta[:, [lik.index(n) for n in profile]]  # G p
    tol = 1e-6 * (1 + z.abs())
    return ((z - lo).abs() <= tol).any(-1) | ((hi - z).abs() <= tol).any(-1)


def _failed_points_message(ok: np.ndarray, q: np.ndarray, at_bound: np.ndarray, profile: tuple[str, ...]) -> str:
    """Where the failed points of a scan lie and whether the 95 % intervals and contours depend on them."""
    bad = ~ok
    edge = np.zeros_like(bad)
    for axis in range(bad.ndim):
        index = [slice(None)] * bad.ndim
        for end in (0, -1):
            index[axis] = end
            edge[tuple(index)] = True
    threshold = delta_q(_EDGE_CL, bad.ndim)
    inside = np.where(ok & np.isfinite(q), q < threshold, False)
    bordering = np.zeros_like(bad)
    for axis in range(bad.ndim):
        for shift in (1, -1):
            neighbour = np.roll(inside, shift, axis=axis)
            index = [slice(None)] * bad.ndim
            index[axis] = 0 if shift == 1 else -1  # no neighbour across the edge
            neighbour[tuple(index)] = False
            bordering |= bad & neighbour
    parts = [f"{int((bad & edge).sum())} on the grid's edge"]
    if profile:
        parts.append(f"{int((bad & at_bound).sum())} with a profiled parameter ({', '.join(profile)}) at its bound")
    n_near = int(bordering.sum())
    impact = (
        f"{n_near} of them border the {_EDGE_CL:.0%} region: intervals and contours there are uncertain "
        "(refine the grid or widen the bounds)"
        if n_near
        else f"none borders the {_EDGE_CL:.0%} region, so the intervals and contours do not depend on them"
    )
    return (
        f"{int(bad.sum())} of {bad.size} scan points did not converge (or gave NaN): {', '.join(parts)}; "
        f"{impact}; they are masked in ProfileScan.valid"
    )


def _scan_window(
    lik: Likelihood,
    grid: GridSpec,
    *,
    profile: tuple[str, ...],
    fixed: Mapping[str, float],
    bounds: Mapping | None,
    config: FitConfig,
    mle: FitResult,
) -> ProfileScan:
    """:func:`_scan` with the ``name: n`` axes of ``grid`` replaced by windows around ``mle``, widened as needed."""
    auto = {n: int(spec) for n, spec in grid.items() if _is_count(spec)}
    limits = {n: _window_limits(lik, n, bounds) for n in auto}
    windows = {n: _initial_window(mle, n, len(grid), limits[n]) for n in auto}
    for _ in range(_MAX_WIDENINGS + 1):
        explicit = {n: (*windows[n], auto[n]) if n in auto else spec for n, spec in grid.items()}
        result = _scan(
            lik, explicit, profile=profile, fixed=fixed, bounds=bounds, start=None, config=config, mle=mle,
            may_refit=True,
        )  # fmt: skip
        if result.mle.twice_nll < mle.twice_nll:  # the grid found a lower minimum: centre on its refit
            windows = {n: _initial_window(result.mle, n, len(grid), limits[n]) for n in auto}
            mle = result.mle
            continue
        wider = _widened(result, windows, limits)
        if wider is None:
            return result
        windows = wider
    warn(
        f"the {_EDGE_CL:.0%} region still reaches the edge of the automatic window after {_MAX_WIDENINGS} "
        f"widenings ({', '.join(f'{n}: [{lo:.4g}, {hi:.4g}]' for n, (lo, hi) in windows.items())}); "
        "give the grid as (lo, hi, n)",
        ConvergenceWarning,
    )
    return result


def scan(
    model: ConditionalDensity | Likelihood,
    x_obs: torch.Tensor | None = None,
    grid: GridSpec | None = None,
    *,
    profile: Iterable[str] | None = None,
    fixed: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    start: Mapping[str, float] | None = None,
    constraints: Mapping[str, torch.distributions.Distribution] | None = None,
    weights: torch.Tensor | None = None,
    extra_terms: Iterable[Callable[[torch.Tensor], torch.Tensor]] | None = None,
    chunk_size: int | None = None,
    config: FitConfig | None = None,
) -> ProfileScan:
    r"""Scan the profile likelihood ratio over one or two parameters.

    .. math::
        q(θ) = -2 \ln L(θ, \hat{\hat ν}(θ)) + 2 \ln L(\hat θ, \hat ν)

    ``θ`` are the parameters in ``grid``; ``ν`` those in ``profile``, minimised at every grid
    point. The global minimum ``(θ̂, ν̂)`` comes from :func:`~gmmpyro.inference.fit.fit` with
    every parameter not in ``fixed`` free; parameters neither scanned, profiled nor in
    ``fixed`` stay at their global-fit value (so ``min q = 0`` at ``θ̂``). Constraint terms
    (e.g. a unit Gaussian on ``nu``) are part of ``ln L``. When every parameter is scanned or
    fixed, the grid spans the fit's search box (``theta_bounds`` within ``bounds``) and no
    ``start`` is given, the grid (which then does not depend on the fit) is scored first and the
    global fit starts from its lowest point: a full grid searches for the global minimum better
    than the fit's few starts, and one start costs less. Otherwise, if the grid
    finds a point below the fit, the fit is repeated from there and the scan with it.

    All grid points are scored in batches (``chunk_size`` points per model call). With
    ``profile``, the conditional fits of all grid points run as one batched damped-Newton
    minimisation started at ``ν̂``; then points that failed, or whose converged neighbour's
    ``ν̂̂`` gives a lower ``-ln L``, are refitted from that neighbour (``config.refine``
    rounds). Points that still fail give a :class:`~gmmpyro.exceptions.ConvergenceWarning`
    and are masked in :attr:`ProfileScan.valid`.

    An automatic window (``name: n``) starts at ``MLE ± 1.25·√Δq·σ`` with ``σ`` the fit's
    Hessian error and ``Δq`` the 99 % threshold of the scan's dimension (``±3.8σ`` in 2-D), so
    the ``n`` points resolve the 68 % and 95 % regions; while the 95 % region reaches an edge,
    that side is widened and the scan repeated (at most four times, never beyond ``bounds`` or
    the model's ``theta_bounds``). It is the scan to use unless the grid itself matters.

    Call it as ``scan(model, x_obs, grid, ...)``, or as ``scan(likelihood, grid, ...)`` with a
    ready :class:`~gmmpyro.inference.likelihood.Likelihood` (which holds the events, weights,
    terms and chunk size: then give none of them here).

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity`, or a
            :class:`~gmmpyro.inference.likelihood.Likelihood`.
        x_obs: observed events, shape ``(N, d)`` (only with a model).
        grid: one or two parameters, each ``name: n`` — ``n`` evenly spaced values over an
            automatic window around the MLE (see below) — or ``name: (lo, hi, n)`` — a tuple with
            an integer ``n``: ``n`` evenly spaced values — or ``name: values``, strictly
            increasing values as a list, array or tensor. A list like ``[-1.0, 1.0, 5]`` is
            rejected as ambiguous.
        profile: names of the parameters minimised at every grid point.
        fixed: ``{name: value}`` held fixed everywhere (also in the global fit).
        bounds: ``{name: (lo, hi)}`` limits for the fits (``None`` for an open side).
        start: starting values of the global fit (see :func:`~gmmpyro.inference.fit.fit`).
        constraints, weights, extra_terms: terms of ``ln L``, see
            :class:`~gmmpyro.inference.likelihood.Likelihood`.
        chunk_size: most grid points per model call (default ``2**13 // N`` on the CPU, ``2**17 // N`` elsewhere).
        config: the minimiser's settings, :class:`~gmmpyro.inference.fit_config.FitConfig`:
            starts of the global fit, tolerance of every fit, iterations per conditional fit
            (``profile_max_iter``), rounds of neighbour warm starts (``refine``).

    Returns:
        A :class:`ProfileScan`.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> model = ToyModel()
        >>> x = model.sample(400, [0.8, -0.8], seed=1)  # N d
        >>> s = scan(model, x, {"cx": 25, "cy": 25})  # 25 x 25 points around the MLE
        >>> s.q.shape, bool(s.valid.all()), [round(float(v), 2) for v in s.grid["cx"][[0, -1]]]
        ((25, 25), True, [0.55, 1.17])
        >>> lines = s.contour(0.68)  # list of (M, 2) arrays of (cx, cy)
        >>> scan(model, x, {"cx": (-1.5, 1.5, 31), "cy": (-1.5, 1.5, 31)}).q.shape  # a fixed grid
        (31, 31)
        >>> lik = Likelihood(model, x)  # events prepared once, for several scans
        >>> scan(lik, {"cx": (0.4, 1.2, 9)}, profile=["cy"], config=FitConfig(n_starts=1)).q.shape
        (9,)
    """
    if isinstance(model, Likelihood) and grid is None:  # scan(likelihood, grid)
        x_obs, grid = None, x_obs
    lik = _likelihood_of(
        model,
        x_obs,
        weights=weights,
        constraints=constraints,
        extra_terms=extra_terms,
        chunk_size=chunk_size,
        caller="scan",
    )
    return _scan(lik, grid, profile=profile, fixed=fixed, bounds=bounds, start=start, config=_checked(config))
