"""ArviZ objects from plain ``(chain, draw, ...)`` arrays.

ArviZ 0.x builds an ``InferenceData`` with ``from_dict(posterior=..., sample_stats=..., ...)``;
ArviZ 1.x builds an ``xarray.DataTree`` with ``from_dict({"posterior": ..., ...})``.
:func:`to_arviz` speaks both, so gmmpyro never goes through ``from_pyro`` (which breaks with
several chains and does not exist in 1.x). Convergence numbers come from ArviZ itself:
``az.rhat(draws)`` and ``az.ess(draws, method="bulk")`` take ``(chain, draw)`` arrays in both.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

__all__ = ["to_arviz"]

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
