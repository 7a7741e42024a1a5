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
  holds exactly one point.

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

__all__ = ["grid", "latin_hypercube", "sobol", "uniform"]

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
