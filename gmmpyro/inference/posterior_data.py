"""ArviZ objects from plain ``(chain, draw, ...)`` arrays, and the convergence numbers we log.

ArviZ 0.x builds an ``InferenceData`` with ``from_dict(posterior=..., sample_stats=..., ...)``;
ArviZ 1.x builds an ``xarray.DataTree`` with ``from_dict({"posterior": ..., ...})``.
:func:`to_arviz` speaks both, so gmmpyro never goes through ``from_pyro`` (which breaks with
several chains and does not exist in 1.x).

:func:`rhat` and :func:`ess_bulk` are the rank-normalised split-R̂ and bulk effective
sample size of Vehtari et al. (2021), arXiv:1903.08008, computed with
:mod:`pyro.ops.stats`, so that diagnostics do not depend on the ArviZ version.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import torch
from pyro.ops import stats
from scipy import special

__all__ = ["ess_bulk", "rhat", "to_arviz"]

GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data")


def to_arviz(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    coords: Mapping[str, object] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    attrs: Mapping[str, Mapping[str, object]] | None = None,
):
    """Build an ArviZ ``InferenceData`` (0.x) or ``DataTree`` (1.x) from nested dicts of arrays.

    Arguments:
        groups: ``{group: {variable: array}}`` with groups among ``posterior, sample_stats,
            log_likelihood, observed_data, constant_data``; sampled groups have leading
            ``(chain, draw)`` dims.
        coords, dims: as for ``arviz.from_dict``.
        attrs: ``{group: {key: value}}`` attributes per group.

    Example:
        >>> draws = {"posterior": {"a": np.zeros((2, 10))}}  # chain draw
        >>> idata = to_arviz(draws, attrs={"posterior": {"sampler": "NUTS"}})
        >>> idata["posterior"]["a"].shape
        (2, 10)
    """
    import arviz as az

    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ArviZ group(s) {sorted(unknown)}; use {GROUPS}")
    attrs = dict(attrs or {})
    groups = {g: dict(v) for g, v in groups.items() if v is not None}
    if "data" in inspect.signature(az.from_dict).parameters:  # ArviZ >= 1: one nested dict -> DataTree
        return az.from_dict(groups, coords=coords, dims=dims, attrs={g: dict(a) for g, a in attrs.items()})
    kwargs = {f"{g}_attrs": dict(a) for g, a in attrs.items() if g in groups}
    return az.from_dict(**groups, coords=coords, dims=dims, **kwargs)


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    """z-scores of the pooled ranks, fractional offset 3/8 as in Vehtari et al. (2021)."""
    from scipy.stats import rankdata

    r = rankdata(x, method="average").reshape(x.shape)
    return special.ndtri((r - 0.375) / (x.size + 0.25))


def _split(x: np.ndarray) -> np.ndarray:
    """Split each chain in halves: ``(C, D) -> (2C, D // 2)`` (drops the middle draw if odd)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _checked_draws(draws: np.ndarray) -> np.ndarray:
    """``draws`` as a float64 ``(chain, draw)`` array with at least 4 draws, else ``ValueError``."""
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 4:
        raise ValueError(f"draws must have shape (chain, draw) with at least 4 draws, got {x.shape}")
    return x


def rhat(draws: np.ndarray) -> float:
    """Rank-normalised split-R̂ (the larger of bulk and folded), ``draws`` of shape ``(chain, draw)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> rhat(rng.normal(size=(4, 500))) < 1.01
        True
    """
    x = _checked_draws(draws)
    if np.ptp(x) == 0:
        return float("nan")
    out = []
    for y in (x, np.abs(x - np.median(x))):
        z = torch.as_tensor(_rank_normalise(_split(y)))
        out.append(float(stats.gelman_rubin(z, chain_dim=0, sample_dim=1)))
    return max(out)


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk effective sample size of ``draws`` of shape ``(chain, draw)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> 1500 < ess_bulk(rng.normal(size=(4, 500))) < 2500
        True
    """
    x = _checked_draws(draws)
    if np.ptp(x) == 0:
        return float("nan")
    z = torch.as_tensor(_rank_normalise(_split(x)))
    return float(stats.effective_sample_size(z, chain_dim=0, sample_dim=1))
