"""Simulation designs: where in parameter space to simulate the training events.

Each function returns ``n`` parameter points ``θ`` of shape ``(n, k)`` (float64, CPU) inside
``bounds``, given either as a mapping ``{name: (low, high)}`` (columns in the mapping's order)
or as a ``(k, 2)`` sequence, array or tensor of ``(low, high)`` rows such as
:attr:`gmmpyro.toy.ToyModel.theta_bounds`.

* :func:`grid` — the Cartesian grid, endpoints included (the journal paper's toy training);
* :func:`uniform` — independent uniform draws;
* :func:`sobol` — a scrambled Sobol' sequence: balanced in every dyadic interval when ``n`` is
  a power of two;
* :func:`latin_hypercube` — a Latin hypercube: every one of ``n`` equal strata of every axis
  holds exactly one point;
* :func:`suggest_points` — where to simulate next: the points where the members of a trained
  ensemble (``DensityModel(ensemble=K)``) disagree most, measured by :func:`disagreement`.

Off-grid designs give one event per distinct ``θ``; :meth:`gmmpyro.DensityModel.fit` then fits
the projection on all events (see :func:`gmmpyro.training.train`).

Example:
    >>> from gmmpyro.toy import ToyModel
    >>> toy = ToyModel()
    >>> theta = latin_hypercube(256, {"cx": (-1.5, 1.5), "cy": (-1.5, 1.5)}, seed=0)
    >>> x = toy.simulate(theta, seed=1)  # one event per θ row
    >>> theta.shape, x.shape
    (torch.Size([256, 2]), torch.Size([256, 4]))
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .exceptions import GmmpyroWarning, warn

__all__ = ["disagreement", "grid", "latin_hypercube", "sobol", "suggest_points", "uniform"]

Bounds = Mapping[str, Sequence[float]] | Sequence[Sequence[float]] | torch.Tensor | np.ndarray


def _as_bounds(bounds: Bounds) -> torch.Tensor:
    """``bounds`` as a float64 ``(k, 2)`` tensor; ``ValueError`` naming the bad parameter."""
    if isinstance(bounds, Mapping):
        names = [repr(name) for name in bounds]
        rows = list(bounds.values())
    else:
        rows = bounds.detach().cpu() if isinstance(bounds, torch.Tensor) else bounds
        names = None
    try:
        table = torch.as_tensor(np.asarray(rows, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"bounds must be (low, high) pairs of numbers, got {bounds!r}") from err
    if table.dim() != 2 or table.shape[0] < 1 or table.shape[1] != 2:
        raise ValueError(f"bounds must have shape (k, 2) with k >= 1, got {tuple(table.shape)}")
    names = names or [str(i) for i in range(table.shape[0])]
    for name, (low, high) in zip(names, table.tolist(), strict=True):
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"bounds of parameter {name} must be finite, got ({low}, {high})")
        if not low < high:
            raise ValueError(f"bounds of parameter {name} need low < high, got ({low}, {high})")
    return table


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return int(n)


def _scale(unit: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Map points of ``[0, 1)^k`` onto the box; the clamp keeps rounding from leaving it."""
    low, high = table[:, 0], table[:, 1]
    return torch.clamp(low + (high - low) * unit, low, high)  # n k


def _qmc_engine(cls, k: int, seed: int | None, **options):
    # scipy 1.15 renamed the engines' ``seed`` to ``rng``; a Generator draws the same under both names
    key = "rng" if "rng" in inspect.signature(cls).parameters else "seed"
    return cls(k, **options, **{key: np.random.default_rng(seed)})


def grid(points_per_axis: int | Sequence[int], bounds: Bounds) -> torch.Tensor:
    """The Cartesian grid of evenly spaced values per axis, endpoints included.

    Arguments:
        points_per_axis: values per axis (``>= 2``), one number for all axes or one per axis.
        bounds: ``{name: (low, high)}`` or ``(k, 2)`` rows.

    Returns:
        ``θ``, shape ``(Π points_per_axis, k)``; the first axis varies slowest (the order of
        ``itertools.product``).

    Example:
        >>> grid(3, {"cx": (-1.0, 1.0), "cy": (0.0, 2.0)})[:4]
        tensor([[-1.,  0.],
                [-1.,  1.],
                [-1.,  2.],
                [ 0.,  0.]], dtype=torch.float64)
    """
    table = _as_bounds(bounds)
    k = table.shape[0]
    counts = [points_per_axis] * k if np.ndim(points_per_axis) == 0 else list(points_per_axis)
    if len(counts) != k:
        raise ValueError(f"points_per_axis needs one count per parameter ({k}), got {len(counts)}")
    for i, count in enumerate(counts):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 2:
            raise ValueError(f"points_per_axis for parameter {i} must be an integer >= 2, got {count!r}")
    axes = [
        torch.linspace(float(low), float(high), int(count), dtype=torch.float64)
        for (low, high), count in zip(table, counts, strict=True)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, k)  # n k


def uniform(n: int, bounds: Bounds, seed: int | None = None) -> torch.Tensor:
    """``n`` independent points drawn uniformly in the box.

    Uses a private ``torch.Generator`` (the global RNG is neither used nor changed).

    Arguments:
        n: number of points, ``>= 1``.
        bounds: ``{name: (low, high)}`` or ``(k, 2)`` rows.
        seed: seed of the generator; ``None`` for a fresh random seed.

    Returns:
        ``θ``, shape ``(n, k)``.

    Example:
        >>> theta = uniform(1000, [(-1.5, 1.5), (0.0, 10.0)], seed=0)
        >>> theta.shape, bool((theta[:, 1] >= 0).all() and (theta[:, 1] <= 10).all())
        (torch.Size([1000, 2]), True)
    """
    n, table = _check_n(n), _as_bounds(bounds)
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return _scale(torch.rand(n, table.shape[0], generator=gen, dtype=torch.float64), table)


def sobol(n: int, bounds: Bounds, seed: int | None = None, scramble: bool = True) -> torch.Tensor:
    """The first ``n`` points of a Sobol' low-discrepancy sequence (``scipy.stats.qmc.Sobol``).

    With ``n = 2^m`` the points form a digital net: in every axis each of the ``2^m`` dyadic
    intervals of width ``2^-m`` of the range holds exactly one point, and the first two axes
    are balanced in every dyadic box of area ``2^-m``. For other ``n`` the first ``n`` points are
    returned, which are evenly spread but lose that balance: a :class:`~gmmpyro.GmmpyroWarning`
    says so and names the nearest powers of two.

    Arguments:
        n: number of points, ``>= 1``.
        bounds: ``{name: (low, high)}`` or ``(k, 2)`` rows.
        seed: seed of the scrambling; ``None`` for a fresh random one.
        scramble: randomise the sequence (linear matrix scrambling plus a digital shift),
            which keeps the balance and moves the unscrambled sequence's first point off the
            lower corner.

    Returns:
        ``θ``, shape ``(n, k)``.

    Example:
        >>> theta = sobol(64, {"cx": (-1.5, 1.5), "cy": (-1.5, 1.5)}, seed=0)
        >>> cells = ((theta[:, 0] + 1.5) / 3 * 64).floor()  # 64 equal strata of cx
        >>> theta.shape, torch.unique(cells).numel()
        (torch.Size([64, 2]), 64)
    """
    from scipy.stats import qmc

    n, table = _check_n(n), _as_bounds(bounds)
    if n & (n - 1):
        below = 1 << (n.bit_length() - 1)
        warn(
            f"sobol: n = {n} is not a power of two, so the points lose the Sobol' balance; "
            f"use n = {below} or {2 * below}",
            GmmpyroWarning,
        )
    engine = _qmc_engine(qmc.Sobol, table.shape[0], seed, scramble=scramble)
    # the first n points of the smallest power of two >= n: scipy's random(n) without its own warning
    unit = engine.random_base2((n - 1).bit_length())[:n]
    return _scale(torch.from_numpy(unit), table)


def latin_hypercube(n: int, bounds: Bounds, seed: int | None = None) -> torch.Tensor:
    """A Latin hypercube sample (``scipy.stats.qmc.LatinHypercube``).

    Each axis is cut into ``n`` equal strata and every stratum holds exactly one point, at a
    uniform random position inside it; the strata of different axes are paired by random
    permutations.

    Arguments:
        n: number of points, ``>= 1``.
        bounds: ``{name: (low, high)}`` or ``(k, 2)`` rows.
        seed: seed of the permutations and positions; ``None`` for a fresh random one.

    Returns:
        ``θ``, shape ``(n, k)``.

    Example:
        >>> theta = latin_hypercube(10, [(0.0, 1.0), (0.0, 1.0)], seed=0)
        >>> sorted((theta[:, 1] * 10).floor().int().tolist())  # one point per stratum
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    from scipy.stats import qmc

    n, table = _check_n(n), _as_bounds(bounds)
    unit = _qmc_engine(qmc.LatinHypercube, table.shape[0], seed).random(n)
    return _scale(torch.from_numpy(unit), table)


def disagreement(model, theta, events: int = 256, seed: int | None = None, chunk: int = 64) -> torch.Tensor:
    """How much the members of an ensemble disagree at each ``θ``: their Jensen–Shannon divergence.

    .. math:: D(θ) = \\frac{1}{K} \\sum_m \\mathrm{KL}\\big(p_m(\\cdot|θ) \\,\\|\\, \\bar p(\\cdot|θ)\\big),
              \\qquad \\bar p = \\frac{1}{K} \\sum_m p_m,

    in nats per event: the information one simulated event at ``θ`` gives, on average, about
    which member is right (0 where all agree; at most ``log K``). Each KL is estimated from
    ``events`` draws of that member, so the estimate carries Monte-Carlo noise of order
    ``sd / √events``.

    Arguments:
        model: a trained :class:`~gmmpyro.DensityModel` with ``ensemble >= 2``.
        theta: parameter points, shape ``(C, k)``.
        events: draws per member and point.
        seed: seed of the draws (``None``: torch's global stream).
        chunk: points evaluated together (memory: ``K² · events · chunk`` log-densities).

    Returns:
        ``D``, shape ``(C,)``, float64 on the CPU.

    Example:
        >>> import gmmpyro
        >>> toy = gmmpyro.toy.ToyModel()
        >>> x, theta = toy.grid_dataset(100, grid=[[0.0, 0.0], [1.0, 1.0]], seed=0)
        >>> model = gmmpyro.DensityModel(toy.observables, toy.params, ensemble=2,
        ...     config=gmmpyro.NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2))
        >>> _ = model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=1), progress=False)
        >>> disagreement(model, [[0.5, 0.5], [0.0, 1.0]], events=32, seed=0).shape
        torch.Size([2])
    """
    K = _check_ensemble(model)
    theta = model.check_theta(theta)
    if theta.dim() != 2:
        raise ValueError(f"theta must have shape (C, {len(model.params)}), got {tuple(theta.shape)}")
    events, chunk = _check_n(events), _check_n(chunk)
    members = [model.member(m) for m in range(K)]
    out = []
    with torch.no_grad():
        for start in range(0, theta.shape[0], chunk):
            points = theta[start : start + chunk]  # c k
            seeds = [None if seed is None else int(seed) + 7919 * m + start for m in range(K)]
            draws = [member.sample(events, points, seed=s) for member, s in zip(members, seeds, strict=True)]
            draws = torch.stack(draws)  # K n c d
            log_p = model.member_log_prob(draws, points)  # K_eval K_draw n c
            own = torch.diagonal(log_p, dim1=0, dim2=1).movedim(-1, 0)  # K n c: each member at its own draws
            mixture = torch.logsumexp(log_p, 0) - math.log(K)  # K n c
            out.append((own - mixture).mean((0, 1)).double().cpu())
    return torch.cat(out)


def suggest_points(
    model,
    n: int,
    bounds: Bounds | None = None,
    *,
    candidates: int = 512,
    events: int = 256,
    min_distance: float | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Where to simulate next: ``n`` points of the box where the ensemble's members disagree most.

    Scores a scrambled Sobol' set of ``candidates`` points with :func:`disagreement` and picks
    greedily: the highest-scoring point, then the highest one at least ``min_distance`` away
    from those picked (distances in units of each axis's range), so that the points spread
    over the poorly learned regions instead of crowding into one. Simulate there, add the
    events to the training set, train again, and repeat (the *train while exploring* loop).

    Arguments:
        model: a trained :class:`~gmmpyro.DensityModel` with ``ensemble >= 2``.
        n: number of points, ``<= candidates``.
        bounds: ``{name: (low, high)}`` for every parameter, or ``(k, 2)`` rows in the model's
            order; default the model's training range.
        candidates: number of Sobol' points scored.
        events: draws per member and candidate (see :func:`disagreement`).
        min_distance: smallest distance between picked points, in units of the ranges;
            default ``0.5 / n^(1/k)``, half the spacing of ``n`` points on a grid. Once no
            candidate is that far from the points picked, the rest are taken by score alone.
        seed: seed of the candidates and of the draws (``None``: fresh).

    Returns:
        ``θ``, shape ``(n, k)``, float64 on the CPU, in the order picked (most disagreement first).

    Example:
        >>> import gmmpyro
        >>> toy = gmmpyro.toy.ToyModel()
        >>> x, theta = toy.grid_dataset(100, grid=[[0.0, 0.0], [1.0, 1.0]], seed=0)
        >>> model = gmmpyro.DensityModel(toy.observables, toy.params, ensemble=2,
        ...     config=gmmpyro.NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2))
        >>> _ = model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=1), progress=False)
        >>> suggest_points(model, 3, candidates=16, events=16, seed=0).shape
        torch.Size([3, 2])
    """
    _check_ensemble(model)
    n, candidates = _check_n(n), _check_n(candidates)
    if n > candidates:
        raise ValueError(f"n = {n} points cannot be picked from {candidates} candidates: raise candidates")
    if isinstance(bounds, Mapping):  # by name, in the model's order
        if set(bounds) != set(model.params):
            raise ValueError(f"bounds name {sorted(bounds)}; the model's parameters are {list(model.params)}")
        bounds = {name: bounds[name] for name in model.params}
    table = _as_bounds(model.theta_bounds.detach().cpu() if bounds is None else bounds)
    k = table.shape[0]
    if k != len(model.params):
        raise ValueError(f"bounds give {k} parameters, the model has {len(model.params)}: {list(model.params)}")
    if min_distance is None:
        min_distance = 0.5 / n ** (1 / k)
    if not (isinstance(min_distance, numbers.Real) and math.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be a finite number >= 0, got {min_distance!r}")
    from scipy.stats import qmc

    engine = _qmc_engine(qmc.Sobol, k, seed, scramble=True)
    points = _scale(torch.from_numpy(engine.random_base2((candidates - 1).bit_length())[:candidates]), table)
    scores = disagreement(model, points.to(model.dtype), events=events, seed=seed)
    unit = (points - table[:, 0]) / (table[:, 1] - table[:, 0])
    order = torch.argsort(scores, descending=True)
    picked: list[int] = []
    for index in order.tolist():
        if len(picked) == n:
            break
        if not picked or torch.cdist(unit[index][None], unit[picked]).min() >= min_distance:
            picked.append(index)
    for index in order.tolist():  # too few far-apart candidates: fill up by score
        if len(picked) == n:
            break
        if index not in picked:
            picked.append(index)
    return points[picked]


def _check_ensemble(model) -> int:
    """The number of members of a trained ensemble; ``ValueError`` otherwise."""
    ensemble = getattr(model, "ensemble", 1)
    if ensemble > 1 and not model.is_fitted:
        raise ValueError("the model is not trained yet: train it (fit) before asking where to simulate")
    if ensemble < 2:
        raise ValueError(
            "disagreement needs an ensemble: train DensityModel(..., ensemble=K) with K >= 2 "
            f"(this model has ensemble={ensemble})"
        )
    return ensemble
