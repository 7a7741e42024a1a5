"""The result of a profile-likelihood scan: :class:`ProfileScan`, with Wilks intervals and contours."""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..exceptions import GmmpyroWarning, warn
from .fit import FitResult

__all__ = ["ProfileScan", "delta_q"]

_ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827


def delta_q(cl: float, dof: int) -> float:
    """Wilks threshold on ``q = Δ(-2 ln L)``: the ``cl`` quantile of a χ² with ``dof`` degrees of freedom.

    ``cl = 0.68`` is read as the one-sigma level ``0.6827`` (the usual convention), giving the
    familiar 1.00 (one parameter) and 2.30 (two parameters); ``0.95`` gives 3.84 and 5.99.

    Example:
        >>> [round(delta_q(cl, dof), 2) for dof in (1, 2) for cl in (0.68, 0.95)]
        [1.0, 3.84, 2.3, 5.99]
    """
    from scipy.stats import chi2

    if not 0 < cl < 1:
        raise ValueError(f"cl must lie in (0, 1), got {cl}")
    return float(chi2.ppf(_ONE_SIGMA if cl == 0.68 else cl, dof))


def _readonly(a) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


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
class ProfileScan:
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

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "grid", MappingProxyType({n: _readonly(v) for n, v in self.grid.items()}))
        set_(self, "fixed", MappingProxyType(dict(self.fixed)))
        for name in ("q", "twice_nll", "valid", "theta", "edm", "n_iter"):
            set_(self, name, _readonly(getattr(self, name)))

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
        """Wilks interval ``{q(name) < Δq}`` around the minimum, ``Δq`` from :func:`delta_q` with 1 dof.

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

    def contour(self, cl: float = 0.68) -> list[np.ndarray]:
        """Wilks contour ``q = Δq`` (2 dof, :func:`delta_q`) of a 2-D scan.

        Linear interpolation of ``q`` between grid points (contourpy, as matplotlib's contour);
        invalid points are masked, zero-likelihood (``q = inf``) points lie outside.

        Returns:
            The contour lines, each an ``(M, 2)`` array of ``(params[0], params[1])`` values.
        """
        import contourpy

        if len(self.params) != 2:
            raise ValueError(f"contour needs a 2-D scan; this one scans {self.params}")
        z = np.where(np.isposinf(self.q), 1e30, self.q)
        z = np.ma.masked_where(~self.valid | np.isnan(z), z)
        gen = contourpy.contour_generator(
            self.grid[self.params[0]], self.grid[self.params[1]], z.T, line_type=contourpy.LineType.Separate
        )
        return [np.asarray(line) for line in gen.lines(delta_q(cl, 2))]

    # ----------------------------------------------------------------- export and display
    def to_dict(self) -> dict:
        """Plain, JSON-serialisable description (NaN and inf stay floats)."""
        return {
            "params": list(self.params),
            "grid": {n: v.tolist() for n, v in self.grid.items()},
            "profiled": list(self.profiled),
            "fixed": dict(self.fixed),
            "model_params": list(self.model_params),
            "q": self.q.tolist(),
            "twice_nll": self.twice_nll.tolist(),
            "twice_nll_min": self.twice_nll_min,
            "valid": self.valid.tolist(),
            "theta": self.theta.tolist(),
            "edm": self.edm.tolist(),
            "n_iter": self.n_iter.tolist(),
            "mle": self.mle.to_dict(),
        }

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
        """Draw the scan, see :func:`gmmpyro.plots_inference.plot_profile`."""
        from ..plots_inference import plot_profile

        return plot_profile(self, ax=ax, **kwargs)

    def _summary(self) -> tuple[str, list[tuple[str, str]]]:
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
        return head, rows

    def __repr__(self) -> str:
        head, rows = self._summary()
        return "\n".join([head] + [f"  {k:<14}{v}" for k, v in rows])

    def _repr_html_(self) -> str:
        head, rows = self._summary()
        body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table><tr><th colspan='2'>{html.escape(head)}</th></tr>{body}</table>"
