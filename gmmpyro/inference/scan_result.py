"""The result of a profile-likelihood scan: :class:`ProfileScan`, with Wilks intervals and contours."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .._results import Result, Table, readonly
from ..exceptions import GmmpyroWarning, warn
from .fit import FitResult
from .wilks import contour_lines, delta_q

__all__ = ["ProfileScan"]


def _parabola_min(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertex value of the parabolas through three points per row; ``x, y (n, 3)`` → ``(n,)``."""
    with np.errstate(divide="ignore", invalid="ignore"):  # masked (inf/NaN) points: fall back to y[:, 1]
        s01 = (y[:, 1] - y[:, 0]) / (x[:, 1] - x[:, 0])
        s12 = (y[:, 2] - y[:, 1]) / (x[:, 2] - x[:, 1])
        a = (s12 - s01) / (x[:, 2] - x[:, 0])
        b = s01 - a * (x[:, 0] + x[:, 1])
        xv = -b / (2 * a)
        vertex = y[:, 0] + s01 * (xv - x[:, 0]) + a * (xv - x[:, 0]) * (xv - x[:, 1])
    inside = (a > 0) & (xv >= x[:, 0]) & (xv <= x[:, 2]) & np.isfinite(vertex)
    return np.where(inside, vertex, y[:, 1])


@dataclass(frozen=True, repr=False)
class ProfileScan(Result):
    """A 1-D or 2-D scan of ``q = Δ(-2 ln L)``, read-only; made by :func:`~gmmpyro.inference.scan.scan`.

    Attributes:
        params: the scanned parameters (one or two), the axes of every array below.
        grid: ``{name: values (n_i,)}``.
        profiled: parameters minimised at every grid point; ``fixed`` the user-fixed values.
        model_params: all parameter names of the model (the last axis of :attr:`theta`).
        q: ``-2 ln L - min(-2 ln L)``, shape ``(n_0[, n_1])``.
        twice_nll: ``-2 ln L`` at every point; ``twice_nll_min`` its reference minimum.
        valid: the point's conditional fit converged (always, without profiling, unless NaN).
        theta: every parameter at every point, shape ``(n_0[, n_1], k)``: the conditional fits
            ``ν̂̂(θ)`` of the profiled parameters, see also :meth:`values`.
        edm, n_iter: the conditional fits' estimated distance to the minimum and iterations.
        mle: the global :class:`~gmmpyro.inference.fit.FitResult`.
    """

    params: tuple[str, ...]
    grid: Mapping[str, np.ndarray]
    profiled: tuple[str, ...]
    fixed: Mapping[str, float]
    model_params: tuple[str, ...]
    q: np.ndarray
    twice_nll: np.ndarray
    valid: np.ndarray
    theta: np.ndarray
    edm: np.ndarray
    n_iter: np.ndarray
    twice_nll_min: float
    mle: FitResult

    _arrays = ("q", "twice_nll", "valid", "theta", "edm", "n_iter")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "grid", MappingProxyType({n: readonly(v) for n, v in self.grid.items()}))
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    # ----------------------------------------------------------------- access
    def values(self, name: str) -> np.ndarray:
        """Value of parameter ``name`` at every grid point (e.g. the conditional fits ``ν̂̂``)."""
        if name not in self.model_params:
            raise ValueError(f"unknown parameter {name!r}; the model's parameters are {self.model_params}")
        return self.theta[..., self.model_params.index(name)]

    def point(self, *index: int) -> dict:
        """Everything about one grid point: parameter values, ``q``, ``-2 ln L``, fit status."""
        if len(index) != len(self.params):
            raise ValueError(f"give {len(self.params)} grid indices, got {index}")
        out = dict(zip(self.model_params, self.theta[index].tolist(), strict=True))
        out.update(
            q=float(self.q[index]),
            twice_nll=float(self.twice_nll[index]),
            valid=bool(self.valid[index]),
            edm=float(self.edm[index]),
            n_iter=int(self.n_iter[index]),
        )
        return out

    def _axis(self, name: str) -> int:
        if name not in self.params:
            raise ValueError(f"{name!r} was not scanned; the scanned parameters are {self.params}")
        return self.params.index(name)

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The 1-D profile ``q(name)`` over the valid, finite points: ``(values, q)``.

        In a 2-D scan the other scanned parameter is profiled on the grid: the minimum along its
        axis, refined by a parabola through the three lowest neighbouring points.
        """
        axis = self._axis(name)
        x = self.grid[name]
        q = np.where(self.valid, self.q, np.inf)
        if q.ndim == 2:
            q = np.moveaxis(q, axis, 0)  # n_name n_other
            other = self.grid[self.params[1 - axis]]
            j = np.clip(np.argmin(q, axis=1), 1, len(other) - 2)
            cols = j[:, None] + np.array([-1, 0, 1])
            y3 = np.take_along_axis(q, cols, axis=1)
            refined = _parabola_min(other[cols], y3)
            q = np.minimum(q.min(axis=1), np.where(np.isfinite(y3).all(1), refined, np.inf))
        keep = np.isfinite(q)
        return x[keep], q[keep]

    # ----------------------------------------------------------------- intervals and contours
    def interval(self, name: str, cl: float = 0.68) -> tuple[float, float]:
        """Wilks interval ``{q(name) < Δq}`` around the minimum, ``Δq = delta_q(cl, 1)``.

        ``Δq`` is :func:`~gmmpyro.inference.wilks.delta_q` with one degree of freedom;
        ``q`` is interpolated by a cubic spline through the valid points and the crossings are
        solved on it. A side on which ``q`` stays below ``Δq`` up to the grid's edge is ``NaN``
        (with a :class:`~gmmpyro.exceptions.GmmpyroWarning`): widen the grid.

        Returns:
            ``(lower, upper)``.
        """
        from scipy.interpolate import CubicSpline
        from scipy.optimize import brentq

        thr = delta_q(cl, 1)
        x, q = self.curve(name)
        if x.size < 2:
            raise ValueError(f"too few valid scan points for an interval on {name!r}")
        spline = CubicSpline(x, q) if x.size > 2 else (lambda t: np.interp(t, x, q))
        fine = np.linspace(x[0], x[-1], 20 * x.size + 1)
        above = spline(fine) > thr
        i0 = int(np.argmin(spline(fine)))
        if above[i0]:  # only where the valid points miss the minimum, e.g. failed conditional fits
            warn(f"q({name}) stays above {thr:.3g} on its valid points: no interval", GmmpyroWarning)
            return math.nan, math.nan
        ends = []
        for side, idx in (("lower", np.nonzero(above[:i0])[0]), ("upper", i0 + np.nonzero(above[i0:])[0])):
            if idx.size == 0:
                warn(
                    f"the {cl:g} interval of {name!r} extends beyond the scanned range on the {side} side",
                    GmmpyroWarning,
                )
                ends.append(math.nan)
                continue
            j = int(idx[-1]) if side == "lower" else int(idx[0]) - 1
            ends.append(float(brentq(lambda t: spline(t) - thr, fine[j], fine[j + 1], xtol=1e-12)))
        return ends[0], ends[1]

    def contour(self, cl: float = 0.68, *, refine: int = 8) -> list[np.ndarray]:
        """Wilks contour ``q = Δq`` (2 dof, :func:`~gmmpyro.inference.wilks.delta_q`) of a 2-D scan.

        ``q`` is interpolated bicubically onto a grid ``refine`` times finer before contouring,
        where the 4×4 neighbourhood of a cell is valid and finite (bilinearly elsewhere), so a
        coarse scan gives a smooth contour: on the toy, a 21 × 21 scan's 68 % contour encloses
        the area of a 201 × 201 scan's to 0.1 % (7 % with linear interpolation).
        ``refine=1`` interpolates linearly between grid points. Invalid points are masked,
        zero-likelihood (``q = inf``) points lie outside; see
        :func:`~gmmpyro.inference.wilks.contour_lines`.

        Returns:
            The contour lines, each an ``(M, 2)`` array of ``(params[0], params[1])`` values.
        """
        if len(self.params) != 2:
            raise ValueError(f"contour needs a 2-D scan; this one scans {self.params}")
        x, y = (self.grid[n] for n in self.params)
        return contour_lines(x, y, self.q, cl, valid=self.valid, refine=refine)

    # ----------------------------------------------------------------- export and display
    def to_xarray(self):
        """An ``xarray.Dataset`` on the grid: ``q``, ``twice_nll``, ``valid``, ``edm``, ``n_iter`` and
        every other parameter's value (the conditional fits); the global fit in ``attrs``."""
        import xarray as xr

        dims = self.params
        data = {n: (dims, getattr(self, n)) for n in ("q", "twice_nll", "valid", "edm", "n_iter")}
        data.update({n: (dims, self.values(n)) for n in self.model_params if n not in self.params})
        attrs = {
            "profiled": ",".join(self.profiled),
            "fixed": ",".join(self.fixed),
            "twice_nll_min": self.twice_nll_min,
        }
        attrs.update({f"mle_{n}": v for n, v in self.mle.values.items()})
        attrs.update({f"mle_error_{n}": v for n, v in self.mle.errors.items()})
        return xr.Dataset(data, coords={n: self.grid[n] for n in dims}, attrs=attrs)

    def plot(self, ax=None, **kwargs):
        """Draw the scan, see :func:`gmmpyro.plotting.plot_profile`."""
        from ..plotting import plot_profile

        return plot_profile(self, ax=ax, **kwargs)

    def _table(self) -> Table:
        shape = " × ".join(str(len(self.grid[n])) for n in self.params)
        head = (
            f"ProfileScan of q({', '.join(self.params)}): {shape} points, {int(self.valid.sum())} valid; "
            f"profiled: {', '.join(self.profiled) or '—'}; fixed: {', '.join(self.fixed) or '—'}"
        )
        rows = [(f"MLE {n}", f"{self.mle.values[n]:.6g} ± {self.mle.errors[n]:.3g}") for n in self.params]
        rows.append(("-2 ln L min", f"{self.twice_nll_min:.8g}"))
        if len(self.params) == 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for cl in (0.68, 0.95):
                    lo, hi = self.interval(self.params[0], cl)
                    rows.append((f"{cl:.0%} interval", f"[{lo:.6g}, {hi:.6g}]"))
        else:
            rows += [(f"range {n}", f"[{self.grid[n][0]:.6g}, {self.grid[n][-1]:.6g}]") for n in self.params]
        return Table(head, rows)
