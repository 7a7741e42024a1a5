"""Small trained models and exact grid posteriors shared by the test files.

The trained toy model is read from ``tests/data`` (see its README for how it was made):
training it costs tens of seconds per test run, reading it milliseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from gmmpyro import DensityModel, NetworkConfig

DATA = Path(__file__).parent / "data"
SMALL_NETWORK = NetworkConfig(n_gauss=8, A1=24, B1=24, B2=6, C=1, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1)
_FILES = {torch.float64: "toy_small_v1.gmm", torch.float32: "toy_small_f32_v1.gmm"}


@functools.cache
def trained_toy_model(dtype: torch.dtype = torch.float64, device: str = "cpu") -> DensityModel:
    """A small DensityModel of the toy (``SMALL_NETWORK``, 6 epochs on the 49-point grid), on ``device``."""
    return DensityModel.load(DATA / _FILES[dtype], map_location=device)


class GridPosterior:
    """A posterior tabulated on a regular grid, from the same ``prepared.log_prob`` NUTS uses."""

    def __init__(self, model, x, axes: list[torch.Tensor], log_prior=None) -> None:
        prepared = model.prepare(x)
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).to(model.dtype)  # *G k
        flat = mesh.reshape(-1, mesh.shape[-1])
        with torch.no_grad():
            lp = torch.cat([prepared.log_prob(c).sum(-1) for c in flat.split(4096)]).reshape(mesh.shape[:-1])
        if log_prior is not None:
            lp = lp + log_prior(mesh)
        self.axes = [a.double() for a in axes]
        self.p = (lp - lp.max()).exp().double()  # *G, unnormalised

    def marginal(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        other = [j for j in range(len(self.axes)) if j != i]
        m = self.p.sum(other) if other else self.p
        return self.axes[i], m / torch.trapezoid(m, self.axes[i])

    def mean_sd(self, i: int) -> tuple[float, float]:
        t, f = self.marginal(i)
        mean = torch.trapezoid(t * f, t)
        return float(mean), float(torch.trapezoid((t - mean) ** 2 * f, t).sqrt())

    def quantile(self, i: int, q: float) -> tuple[float, float]:
        """The ``q`` quantile of the marginal and the marginal density there."""
        t, f = self.marginal(i)
        cdf = torch.cat([torch.zeros(1, dtype=t.dtype), torch.cumulative_trapezoid(f, t)])
        x_q = float(np.interp(q, cdf.numpy(), t.numpy()))
        return x_q, float(np.interp(x_q, t.numpy(), f.numpy()))

    def mass(self, i: int, where) -> float:
        t, f = self.marginal(i)
        return float(torch.trapezoid(f * where(t), t))

    def window(self, i: int, n_sd: float, lo: float, hi: float) -> tuple[float, float]:
        if lo == hi:
            return lo, hi
        mean, sd = self.mean_sd(i)
        return max(lo, mean - n_sd * sd), min(hi, mean + n_sd * sd)


def refined_grid(model, x, ranges, n_coarse, n_fine, log_prior=None) -> GridPosterior:
    """Coarse grid over the prior ranges, then a fine grid over ±8 sd of the coarse marginals."""

    def axis(lo, hi, n):  # lo == hi: a fixed parameter, one point
        return torch.linspace(lo, hi, n if hi > lo else 1)

    coarse = GridPosterior(model, x, [axis(lo, hi, n_coarse) for lo, hi in ranges], log_prior)
    fine = [axis(*coarse.window(i, 8.0, lo, hi), n_fine) for i, (lo, hi) in enumerate(ranges)]
    return GridPosterior(model, x, fine, log_prior)
