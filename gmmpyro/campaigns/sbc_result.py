"""The answer of a simulation-based calibration campaign: :class:`SBCResult`, with its rank histograms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .._results import Result, Table, readonly
from ._ranks import bin_edges, expected_band

__all__ = ["SBCResult"]


@dataclass(frozen=True, repr=False)
class SBCResult(Result):
    """Ranks of the true parameters among posterior draws over simulations, and their uniformity, read-only.

    Made by :func:`~gmmpyro.campaigns.calibration.sbc`. With the exact posterior and
    independent draws each parameter's rank is uniform on ``0 … L`` (Talts et al. 2018); a
    posterior too narrow piles ranks at both ends (∪), one too wide in the middle (∩), a biased
    one on one side. Two tests per parameter, as each misses what the other sees:

    * Pearson's χ² of the histogram that :meth:`plot` draws, in ``n_bins`` bins: any shape.
      ``n_bins`` keeps at least 10 expected ranks per bin (the χ² approximation) and at most
      20 (more bins dilute a smooth deviation over more degrees of freedom), a divisor of
      ``L + 1`` where one fits, so that the bins hold equally many rank values.
    * Kolmogorov–Smirnov of the randomised ranks ``u = (r + U)/(L + 1)``, ``U ~ Uniform(0, 1)``
      drawn per simulation from the campaign's seed: exactly uniform under calibration, so the
      p-value is exact for discrete ranks and needs no bins; the more sensitive of the two to
      a shift.

    A small p-value says "not calibrated"; with several parameters, several tests are read at once.

    Attributes:
        params: the ranked parameters (those with a prior distribution), the columns of :attr:`ranks`.
        fixed: the parameters held at a value.
        n_simulations: simulations asked for; ``n_done`` of them are ranked, ``n_failed`` are
            not (the sampler raised; see ``simulations["message"]``).
        n_events: events per simulation.
        n_draws: ``L``, the posterior draws each rank counts.
        sampler: the posterior sampler.
        ranks: shape ``(n_done, len(params))``, values in ``0 … L``, in simulation order.
        n_bins: bins of the histogram and of the χ² test.
        chi2, p_chi2: the χ² statistic (``n_bins - 1`` degrees of freedom) and its p-value, shape ``(len(params),)``.
        p_ks: the KS p-value of the randomised ranks, shape ``(len(params),)``.
        n_low_ess: ranked simulations whose posterior had an effective sample size below ``L``
            (their kept draws are correlated: raise the draws or the particles).
        n_done, n_failed: see above.
        simulations: the per-simulation table ``{column: array (n_simulations,)}``, sorted:
            ``toy`` (the simulation), ``seed_theta``, ``seed_events``, ``seed_posterior``, ``status``
            (``"ok"``, ``"low_ess"``, ``"failed"``), ``message``, ``ess``, ``theta_<name>`` (the
            truth), ``rank_<name>`` (-1 if failed), ``mean_<name>`` and ``sd_<name>`` (of all draws).
    """

    params: tuple[str, ...]
    fixed: Mapping[str, float]
    n_simulations: int
    n_events: int
    n_draws: int
    sampler: str
    ranks: np.ndarray
    n_bins: int
    chi2: np.ndarray
    p_chi2: np.ndarray
    p_ks: np.ndarray
    n_done: int
    n_failed: int
    n_low_ess: int
    simulations: Mapping[str, np.ndarray]

    _arrays = ("ranks", "chi2", "p_chi2", "p_ks")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        tables = {k: readonly(v) for k, v in self.simulations.items()}
        object.__setattr__(self, "simulations", MappingProxyType(tables))

    def to_pandas(self):
        """The per-simulation table as a ``pandas.DataFrame`` (pandas comes with ArviZ's xarray)."""
        import pandas

        return pandas.DataFrame(dict(self.simulations))

    def summary(self) -> dict:
        """Per parameter its p-values, and the counts."""
        out = {f"p_chi2 {n}": float(self.p_chi2[j]) for j, n in enumerate(self.params)}
        out.update({f"p_ks {n}": float(self.p_ks[j]) for j, n in enumerate(self.params)})
        out.update(n_simulations=self.n_simulations, n_done=self.n_done, n_failed=self.n_failed)
        out["n_low_ess"] = self.n_low_ess
        return out

    def _table(self) -> Table:
        rows = [
            (n, f"{self.chi2[j]:.1f}", f"{self.p_chi2[j]:.3g}", f"{self.p_ks[j]:.3g}")
            for j, n in enumerate(self.params)
        ]
        title = (
            f"SBCResult ({self.n_simulations} simulations of {self.n_events} events, ranks among {self.n_draws} "
            f"{self.sampler} draws: {self.n_done} ranked ({self.n_low_ess} with ESS < {self.n_draws}), "
            f"{self.n_failed} failed)"
        )
        header = ("parameter", f"χ² ({self.n_bins - 1} dof)", "p (χ²)", "p (KS)")
        return Table(title, rows, header=header, ok=self.n_failed == 0, align="lrrr")

    def plot(self, ax=None, *, level: float = 0.99):
        """Rank histograms, one panel per parameter, with the expected count and its binomial band.

        The grey band is, per bin, the central ``level`` interval of the count of ``n_done``
        uniform ranks (binomial); with ``B`` bins about ``B·(1 - level)`` of them fall outside
        by chance.

        Arguments:
            ax: one matplotlib axes per parameter (any nesting); a new figure if ``None``.
            level: the band's probability.

        Returns:
            The matplotlib ``Figure``.
        """
        from ..plotting._axes import given_axes, new_panels

        k = len(self.params)
        if ax is None:
            fig, axes = new_panels(1, k, figsize=(3.6 * k, 3.0), layout="constrained")
        else:
            fig, axes = given_axes(ax, k, "SBCResult.plot")
        edges = bin_edges(self.n_draws, self.n_bins)
        expected, low, high = expected_band(self.n_done, edges, level)
        for j, (name, a) in enumerate(zip(self.params, axes, strict=True)):
            counts = np.histogram(self.ranks[:, j], bins=edges)[0]
            a.fill_between(edges, np.append(low, low[-1]), np.append(high, high[-1]), step="post",
                           color="0.8", lw=0, label=f"{100 * level:g} % band")  # fmt: skip
            a.stairs(expected, edges, baseline=None, color="0.4", ls="--", label="expected")
            a.stairs(counts, edges, baseline=None, color="C0", lw=1.5, label="ranks")
            a.set_xlim(edges[0], edges[-1])
            a.set_ylim(bottom=0)
            a.set_xlabel(f"rank of {name} among {self.n_draws} draws")
            a.set_title(f"{name}: p(χ²) {self.p_chi2[j]:.2g}, p(KS) {self.p_ks[j]:.2g}", fontsize="small")
        axes[0].set_ylabel("simulations")
        axes[0].legend(fontsize="x-small")
        return fig
