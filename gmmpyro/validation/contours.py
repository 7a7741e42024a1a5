"""Inference agreement of a model with a reference density (journal Fig. 15): :func:`contour_agreement`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._results import Result, Table
from ..exceptions import ConvergenceWarning, GmmpyroWarning, warn
from ..inference.fit_config import FitConfig
from ..inference.scan import scan
from ..inference.wilks import contour_lines, delta_q
from ._helpers import as_numpy, fmt

__all__ = ["ContourAgreement", "contour_agreement", "region_iou"]

_BIG = 1e30  # stands for q = inf and invalid points: outside every region (as in contour_lines)


def _fine_axis(axis: np.ndarray, refine: int) -> np.ndarray:
    steps = np.linspace(0.0, 1.0, refine + 1)[:-1]
    fine = (axis[:-1, None] + np.diff(axis)[:, None] * steps).ravel()
    return np.append(fine, axis[-1])


def _trapezoid_weights(axis: np.ndarray) -> np.ndarray:
    w = np.zeros_like(axis)
    w[:-1] += np.diff(axis) / 2
    w[1:] += np.diff(axis) / 2
    return w


def _upsample(q: np.ndarray, valid, x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    from scipy.interpolate import RegularGridInterpolator

    z = np.where(np.isfinite(q), q, _BIG)
    if valid is not None:
        z = np.where(valid, z, _BIG)
    interp = RegularGridInterpolator((x, y), z, method="linear")
    X, Y = np.meshgrid(fx, fy, indexing="ij")
    return interp(np.stack([X, Y], -1))


def region_iou(q_a, q_b, x, y, threshold: float, *, valid_a=None, valid_b=None, refine: int = 8) -> float:
    """Intersection over union of the regions ``{q < threshold}`` of two grids of ``q``.

    Both grids are linearly interpolated onto a grid ``refine`` times finer (contour lines are
    drawn with a smoother local cubic; the two regions compared are interpolated alike), and the
    area of each region is summed with trapezoid cell weights; points with
    ``q = inf`` or ``valid = False`` lie outside. ``NaN`` if both regions are empty.

    Arguments:
        q_a, q_b: ``q`` on the grid, shape ``(len(x), len(y))``.
        x, y: the grid axes (strictly increasing).
        threshold: e.g. :func:`~gmmpyro.inference.profile.delta_q` ``(0.68, 2)``.
        valid_a, valid_b: optional masks of usable grid points, same shape as ``q``.
        refine: subdivisions per grid cell.

    Returns:
        ``|A ∩ B| / |A ∪ B|`` in ``[0, 1]``.

    Example:
        >>> g = np.linspace(-2, 2, 41)
        >>> X, Y = np.meshgrid(g, g, indexing="ij")
        >>> disc = X**2 + Y**2
        >>> region_iou(disc, disc, g, g, 1.0), round(region_iou(disc, (X - 2) ** 2 + Y**2, g, g, 1.0), 3)
        (1.0, 0.0)
    """
    x, y = as_numpy(x, "x", ndim=1), as_numpy(y, "y", ndim=1)
    q_a, q_b = as_numpy(q_a, "q_a", ndim=2), as_numpy(q_b, "q_b", ndim=2)
    if q_a.shape != (len(x), len(y)) or q_b.shape != q_a.shape:
        raise ValueError(f"q_a {q_a.shape} and q_b {q_b.shape} must both have shape ({len(x)}, {len(y)})")
    fx, fy = _fine_axis(x, refine), _fine_axis(y, refine)
    area = np.outer(_trapezoid_weights(fx), _trapezoid_weights(fy))
    a = _upsample(q_a, valid_a, x, y, fx, fy) < threshold
    b = _upsample(q_b, valid_b, x, y, fx, fy) < threshold
    union = float(area[a | b].sum())
    return float(area[a & b].sum()) / union if union > 0 else math.nan


@dataclass(frozen=True, repr=False)
class ContourAgreement(Result):
    """Model vs reference profile-likelihood results on pseudo-datasets, made by :func:`contour_agreement`.

    Attributes:
        params: the two scanned parameters.
        grid_x, grid_y: the grid axes of each pseudo-dataset, shape ``(P, n_x)`` and ``(P, n_y)``
            (model and reference share each dataset's grid; without ``window`` all rows are equal).
        profiled: parameters minimised at every grid point.
        truths: the true point of each pseudo-dataset, shape ``(P, 2)``.
        n_events: events per pseudo-dataset.
        mle_model, mle_reference: maximum-likelihood estimates ``(P, 2)``.
        mle_distance: Euclidean distance between them ``(P,)``, in parameter units.
        iou_68, iou_95: intersection over union of the 68 % and 95 % Wilks regions ``(P,)``.
        q_truth_model, q_truth_reference: ``q`` at the true point ``(P,)`` (``< 2.30`` means the
            68 % region covers it).
        q_model, q_reference: the scans' ``q`` grids ``(P, n_x, n_y)``; ``valid_*`` their masks.
        clipped: per pseudo-dataset, a 95 % region reaches the edge of its grid (its IoU is then
            taken inside the grid only: widen ``window``).
        failed: per pseudo-dataset, ``""`` or why a scan failed (then its numbers are ``NaN``).
        fixed: parameters held at each pseudo-dataset's true value.
    """

    params: tuple[str, str]
    profiled: tuple[str, ...]
    grid_x: np.ndarray
    grid_y: np.ndarray
    truths: np.ndarray
    n_events: int
    mle_model: np.ndarray
    mle_reference: np.ndarray
    mle_distance: np.ndarray
    iou_68: np.ndarray
    iou_95: np.ndarray
    q_truth_model: np.ndarray
    q_truth_reference: np.ndarray
    q_model: np.ndarray
    q_reference: np.ndarray
    valid_model: np.ndarray
    valid_reference: np.ndarray
    clipped: np.ndarray
    failed: tuple[str, ...]
    fixed: tuple[str, ...] = ()

    _arrays = (
        "grid_x", "grid_y", "truths", "mle_model", "mle_reference", "mle_distance", "iou_68", "iou_95",
        "q_truth_model", "q_truth_reference", "q_model", "q_reference", "valid_model", "valid_reference", "clipped",
    )  # fmt: skip

    @property
    def mean_iou_68(self) -> float:
        """Mean 68 % IoU over the pseudo-datasets (``NaN`` ones skipped)."""
        return _nanmean(self.iou_68)

    @property
    def mean_iou_95(self) -> float:
        """Mean 95 % IoU."""
        return _nanmean(self.iou_95)

    @property
    def mean_mle_distance(self) -> float:
        """Mean MLE distance."""
        return _nanmean(self.mle_distance)

    def contours(self, index: int, which: str = "model", cl: float = 0.68) -> list[np.ndarray]:
        """Wilks contour lines ``q = Δq(cl, 2)`` of pseudo-dataset ``index``, each ``(M, 2)``.

        Arguments:
            index: the pseudo-dataset.
            which: ``"model"`` or ``"reference"``.
            cl: the confidence level.
        """
        if which not in ("model", "reference"):
            raise ValueError(f"which must be 'model' or 'reference', got {which!r}")
        q = self.q_model[index] if which == "model" else self.q_reference[index]
        valid = self.valid_model[index] if which == "model" else self.valid_reference[index]
        return contour_lines(self.grid_x[index], self.grid_y[index], q, cl, valid=valid)

    def summary(self) -> dict:
        """Means and the per-dataset table."""
        points = []
        for i in range(len(self.truths)):
            points.append(
                {
                    "truth": self.truths[i].tolist(),
                    "mle_model": self.mle_model[i].tolist(),
                    "mle_reference": self.mle_reference[i].tolist(),
                    "mle_distance": float(self.mle_distance[i]),
                    "iou_68": float(self.iou_68[i]),
                    "iou_95": float(self.iou_95[i]),
                    "clipped": bool(self.clipped[i]),
                    "failed": self.failed[i],
                }
            )
        return {
            "params": list(self.params),
            "n_datasets": len(self.truths),
            "n_events": self.n_events,
            "mean_mle_distance": self.mean_mle_distance,
            "mean_iou_68": self.mean_iou_68,
            "mean_iou_95": self.mean_iou_95,
            "n_failed": sum(bool(f) for f in self.failed),
            "n_clipped": int(self.clipped.sum()),
            "datasets": points,
        }

    def _table(self) -> Table:
        head = (
            f"ContourAgreement of ({', '.join(self.params)}) on {len(self.truths)} pseudo-datasets of "
            f"{self.n_events} events: mean IoU 68 % {fmt(self.mean_iou_68, 3)}, "
            f"95 % {fmt(self.mean_iou_95, 3)}, "
            f"mean MLE distance {fmt(self.mean_mle_distance, 3)}"
        )
        rows = []
        for i, t in enumerate(self.truths):
            label = "truth (" + ", ".join(f"{v:+.2f}" for v in t) + ")"
            if self.failed[i]:
                rows.append((label, f"failed: {self.failed[i]}"))
                continue
            rows.append(
                (
                    label,
                    f"IoU 68 % {self.iou_68[i]:.3f}, 95 % {self.iou_95[i]:.3f}, "
                    f"MLE distance {self.mle_distance[i]:.4f}",
                )
            )
        return Table(head, rows)


def _nanmean(a: np.ndarray) -> float:
    finite = a[np.isfinite(a)]
    return float(finite.mean()) if finite.size else math.nan


def _grid_spec(model, grid, names) -> dict:
    params = list(model.params)
    if grid is None:
        if len(params) != 2:
            raise ValueError(f"the model has parameters {params}: give grid= with the two to scan")
        bounds = torch.as_tensor(model.theta_bounds).double().cpu().numpy()
        return {n: (float(bounds[i, 0]), float(bounds[i, 1]), 61) for i, n in enumerate(params)}
    if not isinstance(grid, Mapping) or len(grid) != 2:
        raise ValueError(f"grid must map exactly two parameter names to (lo, hi, n) or values, got {grid!r}")
    unknown = [n for n in grid if n not in params]
    if unknown:
        raise ValueError(f"grid names unknown parameter(s) {unknown}; the model's parameters are {params}")
    return dict(grid)


def _axis(spec) -> np.ndarray:
    if isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[2], (int, np.integer)):
        return np.linspace(float(spec[0]), float(spec[1]), int(spec[2]))
    return as_numpy(spec, "grid axis", ndim=1)


def _q_at(q: np.ndarray, valid: np.ndarray, x: np.ndarray, y: np.ndarray, point: np.ndarray) -> float:
    from scipy.interpolate import RegularGridInterpolator

    if not (x[0] <= point[0] <= x[-1] and y[0] <= point[1] <= y[-1]):
        return math.nan
    z = np.where(valid & np.isfinite(q), q, _BIG)
    return float(RegularGridInterpolator((x, y), z)(point[None])[0])


def _window_axes(axes: list[np.ndarray], centre: np.ndarray, window: np.ndarray) -> list[np.ndarray]:
    """Axes of as many points as ``axes``, spanning ``centre ± window`` clipped to their range."""
    out = []
    for a, c, w in zip(axes, centre, window, strict=True):
        start, stop = max(c - w, a[0]), min(c + w, a[-1])
        out.append(np.linspace(start, stop, len(a)))
    return out


def _touches_edge(q: np.ndarray, valid: np.ndarray, threshold: float) -> bool:
    inside = valid & (q < threshold)
    return bool(inside[0].any() or inside[-1].any() or inside[:, 0].any() or inside[:, -1].any())


def contour_agreement(
    model,
    reference,
    truths,
    *,
    n_events: int = 400,
    datasets: Sequence | None = None,
    grid: Mapping | None = None,
    window: float | Sequence[float] | None = None,
    profile: Iterable[str] | None = None,
    fix: Iterable[str] | None = None,
    n_starts: int = 4,
    refine: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> ContourAgreement:
    """Compare profile-likelihood results of a model and a reference density on pseudo-datasets.

    For each true point a pseudo-dataset of ``n_events`` is drawn from ``reference`` (or taken
    from ``datasets``), and both densities are scanned with
    :func:`gmmpyro.inference.profile.scan` on the same 2-D grid (global fits bounded to the
    model's ``theta_bounds``). Per dataset it reports the distance between the two MLEs and the
    intersection over union of their 68 % and 95 % Wilks regions (:func:`region_iou`). A scan
    that fails is recorded in :attr:`ContourAgreement.failed` with a
    :class:`~gmmpyro.exceptions.ConvergenceWarning`.

    The regions of a few hundred events are small (the toy's 68 % region has a radius of about
    0.1 at 400 events), so a grid over the whole parameter range resolves them poorly; with
    ``window`` each dataset gets its own grid, ``truth ± window``, with as many points, which
    resolves them finely at lower cost. A 95 % region that reaches the edge of its grid is
    flagged in :attr:`ContourAgreement.clipped` with a :class:`~gmmpyro.exceptions.GmmpyroWarning`.

    Reference: journal Section 6 and Fig. 15 (nine true points ``c ∈ {-0.8, 0, 0.8}²``,
    400 events each).

    Arguments:
        model: the :class:`~gmmpyro.protocols.ConditionalDensity` under test.
        reference: the reference density (e.g. :class:`~gmmpyro.toy.ToyModel`), same parameters.
        truths: the true points, shape ``(P, k)``.
        n_events: events per pseudo-dataset.
        datasets: optional ``P`` event tensors ``(N, d)`` to use instead of drawing them.
        grid: ``{name: (lo, hi, n)}`` or ``{name: values}`` for the two scanned parameters;
            default both parameters of a two-parameter model over its ``theta_bounds``, 61 points.
        window: half-width of a per-dataset grid around each true point, one value or one per
            scanned parameter (same number of points as ``grid``, clipped to its range); ``None``
            scans ``grid`` itself.
        profile: parameters minimised at every grid point (e.g. a nuisance parameter).
        fix: parameters held at each pseudo-dataset's true value instead (cheaper than
            profiling: the scans need no minimisation, only the global fits).
        n_starts: starting points of each global fit.
        refine: grid subdivisions for the IoU.
        seed: pseudo-dataset ``i`` is drawn with seed ``seed + i``.
        progress: show a progress bar over the datasets.

    Returns:
        A :class:`ContourAgreement`.

    Example:
        >>> from gmmpyro.toy import ToyModel
        >>> toy = ToyModel()
        >>> grid = {"cx": (-1.5, 1.5, 21), "cy": (-1.5, 1.5, 21)}
        >>> same = contour_agreement(toy, toy, [[0.8, 0.5]], grid=grid, window=0.4)
        >>> float(same.iou_68[0]), float(same.mle_distance[0]), same.grid_x.shape
        (1.0, 0.0, (1, 21))
    """
    from .._progress import progress_bar

    params = list(model.params)
    if list(reference.params) != params:
        raise ValueError(f"model parameters {params} and reference parameters {list(reference.params)} differ")
    spec = _grid_spec(model, grid, params)
    names = tuple(spec)
    axes = [_axis(spec[n]) for n in names]
    if window is not None:
        window = np.broadcast_to(np.asarray(window, dtype=float), (2,))
        if not np.all(window > 0):
            raise ValueError(f"window must be positive (one value or one per parameter) or None, got {window}")
    profile, fix = tuple(profile or ()), tuple(fix or ())
    if set(profile) & set(fix):
        raise ValueError(f"parameter(s) {sorted(set(profile) & set(fix))} cannot be both profiled and fixed")
    truths = as_numpy(truths, "truths", ndim=2)
    if truths.shape[1] != len(params):
        raise ValueError(f"truths must have shape (P, {len(params)}) for {params}, got {truths.shape}")
    if datasets is not None and len(datasets) != len(truths):
        raise ValueError(f"give one dataset per true point: {len(datasets)} datasets, {len(truths)} truths")
    model_bounds = torch.as_tensor(model.theta_bounds).double().cpu().numpy()
    bounds = {n: tuple(model_bounds[params.index(n)].tolist()) for n in (*names, *profile)}
    idx = [params.index(n) for n in names]
    thr68, thr95 = delta_q(0.68, 2), delta_q(0.95, 2)
    config = FitConfig(n_starts=n_starts, seed=seed)

    P, shape = len(truths), tuple(len(a) for a in axes)
    out = {key: np.full((P, 2), np.nan) for key in ("mle_model", "mle_reference")} | {
        key: np.full(P, np.nan) for key in ("mle_distance", "iou_68", "iou_95", "q_truth_model", "q_truth_reference")
    }
    q = {w: np.full((P, *shape), np.nan) for w in ("model", "reference")}
    valid = {w: np.zeros((P, *shape), dtype=bool) for w in ("model", "reference")}
    grid_axes = [np.zeros((P, n)) for n in shape]
    clipped = np.zeros(P, dtype=bool)
    failed = [""] * P
    n_used = n_events
    for i in progress_bar(range(P), progress=progress, desc="pseudo-datasets", unit="dataset"):
        ax_i = axes
        if window is not None:
            ax_i = _window_axes(axes, truths[i][idx], window)
        grid_axes[0][i], grid_axes[1][i] = ax_i
        if datasets is None:
            x = reference.sample(int(n_events), torch.as_tensor(truths[i], dtype=reference.dtype), seed=seed + i)
        else:
            x = torch.as_tensor(datasets[i])
        n_used = int(x.shape[0])
        scans = {}
        for which, density in (("reference", reference), ("model", model)):
            try:
                scans[which] = scan(
                    density, x, dict(zip(names, ax_i, strict=True)), profile=profile, bounds=bounds, config=config,
                    fixed={n: float(truths[i][params.index(n)]) for n in fix},
                )  # fmt: skip
            except (ValueError, RuntimeError) as error:  # numerical failure of one fit: keep going
                failed[i] = f"{which} scan: {error}"
                warn(
                    f"pseudo-dataset {i} (truth {truths[i].tolist()}): the {which} scan failed: {error}",
                    ConvergenceWarning,
                )
                break
        if failed[i]:
            continue
        for which, s in scans.items():
            q[which][i], valid[which][i] = s.q, s.valid
            out[f"mle_{which}"][i] = [s.mle.values[n] for n in names]
            out[f"q_truth_{which}"][i] = _q_at(s.q, s.valid, *ax_i, truths[i][idx])
            clipped[i] |= _touches_edge(s.q, s.valid, thr95)
        if clipped[i]:
            warn(
                f"pseudo-dataset {i} (truth {truths[i].tolist()}): a 95 % region reaches the edge of the "
                "grid; its IoU counts the part inside only (widen the window or the grid)",
                GmmpyroWarning,
            )
        out["mle_distance"][i] = float(np.linalg.norm(out["mle_model"][i] - out["mle_reference"][i]))
        for key, thr in (("iou_68", thr68), ("iou_95", thr95)):
            out[key][i] = region_iou(
                q["model"][i], q["reference"][i], *ax_i, thr,
                valid_a=valid["model"][i], valid_b=valid["reference"][i], refine=refine,
            )  # fmt: skip
    return ContourAgreement(
        params=names,
        profiled=profile,
        grid_x=grid_axes[0],
        grid_y=grid_axes[1],
        truths=truths[:, idx],
        n_events=n_used,
        q_model=q["model"],
        q_reference=q["reference"],
        valid_model=valid["model"],
        valid_reference=valid["reference"],
        clipped=clipped,
        failed=tuple(failed),
        fixed=fix,
        **out,
    )
