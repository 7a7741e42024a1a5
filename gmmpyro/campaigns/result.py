"""The answer of a coverage campaign: :class:`CoverageResult`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .._results import Result, Table, readonly
from ..inference.wilks import ONE_SIGMA

__all__ = ["CoverageResult", "nominal_level"]


def nominal_level(cl: float) -> float:
    """The coverage a level promises: ``0.68`` is read as one sigma, 0.6827, as ``delta_q`` reads it.

    Example:
        >>> round(nominal_level(0.68), 4), nominal_level(0.95)
        (0.6827, 0.95)
    """
    return ONE_SIGMA if cl == 0.68 else float(cl)


@dataclass(frozen=True, repr=False)
class CoverageResult(Result):
    """Coverage of profile-likelihood intervals by pseudo-experiments, read-only.

    Made by :func:`~gmmpyro.campaigns.interval_coverage.coverage`.

    Coverage is the fraction ``p`` of successful toys whose interval (or, for ``joint``, whose
    region of all tested parameters together) contains the truth; its binomial standard error
    is ``√(p(1 - p)/n)`` with ``n = n_done``.

    Attributes:
        params: the tested parameters (those not profiled), the rows of :attr:`coverage`.
        cl: the confidence levels, the columns of :attr:`coverage`.
        theta_true: the true value of every model parameter.
        n_events: events per toy.
        coverage: shape ``(len(params), len(cl))``.
        error: binomial standard error of :attr:`coverage`, same shape.
        joint_coverage: shape ``(len(cl),)``: the Wilks region of all tested parameters at
            once (``Δq`` with ``len(params)`` degrees of freedom); with one tested parameter, its
            interval.
        joint_error: its binomial standard error.
        n_toys: toys asked for; ``n_done`` of them enter the coverage, ``n_failed`` do not (a
            numerical error or a non-finite ``-2 ln L``; see ``toys["message"]``).
        n_unconverged: toys among ``n_done`` with a fit that stopped short of its convergence
            test (``status = "unconverged"``; usually a minimum on a cusp of the likelihood).
        toys: the per-toy table ``{column: array (n_toys,)}``, sorted by toy index:
            ``toy``, ``seed``, ``status`` (``"ok"``, ``"unconverged"``, ``"failed"``), ``message``, ``q_<name>``
            and ``q_joint`` (``q`` at the truth), ``covered_<name>_<level>``,
            ``mle_<param>``, ``twice_nll`` (at the MLE), ``glob_<param>`` (each constraint's
            global observable drawn for the toy). ``pandas.DataFrame(result.toys)`` makes it a frame.
    """

    params: tuple[str, ...]
    cl: tuple[float, ...]
    theta_true: Mapping[str, float]
    n_events: int
    coverage: np.ndarray
    error: np.ndarray
    joint_coverage: np.ndarray
    joint_error: np.ndarray
    n_toys: int
    n_done: int
    n_unconverged: int
    n_failed: int
    toys: Mapping[str, np.ndarray]

    _arrays = ("coverage", "error", "joint_coverage", "joint_error")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "theta_true", MappingProxyType(dict(self.theta_true)))
        object.__setattr__(self, "toys", MappingProxyType({k: readonly(v) for k, v in self.toys.items()}))

    @property
    def nominal(self) -> np.ndarray:
        """The nominal coverage of each level, shape ``(len(cl),)`` (``0.68`` → 0.6827)."""
        return readonly([nominal_level(c) for c in self.cl])

    def pull(self) -> np.ndarray:
        """``(coverage - nominal) / error``, shape ``(len(params), len(cl))``: how many standard errors off."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.coverage - self.nominal) / self.error

    def summary(self) -> dict:
        """Headline numbers: ``{"<name> <level>": coverage}`` and the toy counts."""
        out = {
            f"{n} {c:g}": float(self.coverage[i, j]) for i, n in enumerate(self.params) for j, c in enumerate(self.cl)
        }
        if len(self.params) > 1:
            out.update({f"joint {c:g}": float(self.joint_coverage[j]) for j, c in enumerate(self.cl)})
        out.update(n_toys=self.n_toys, n_done=self.n_done, n_unconverged=self.n_unconverged, n_failed=self.n_failed)
        return out

    def _table(self) -> Table:
        def cell(p: float, e: float) -> str:
            return "-" if math.isnan(p) else f"{100 * p:.1f} ± {100 * e:.1f}"

        rows = [
            (n, *(cell(self.coverage[i, j], self.error[i, j]) for j in range(len(self.cl))))
            for i, n in enumerate(self.params)
        ]
        if len(self.params) > 1:
            label = f"({', '.join(self.params)})"
            rows.append((label, *(cell(p, e) for p, e in zip(self.joint_coverage, self.joint_error, strict=True))))
        rows.append(("nominal", *(f"{100 * v:.1f}" for v in self.nominal)))
        truth = ", ".join(f"{n} = {v:g}" for n, v in self.theta_true.items())
        title = (
            f"CoverageResult ({self.n_toys} toys of {self.n_events} events at {truth}: "
            f"{self.n_done} done ({self.n_unconverged} with a fit short of convergence), {self.n_failed} failed)"
        )
        header = ("parameter", *(f"{100 * c:g} % [%]" for c in self.cl))
        return Table(title, rows, header=header, ok=self.n_failed == 0, align="l" + "r" * len(self.cl))
