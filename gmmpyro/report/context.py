"""What the report's steps share: the checked inputs of one report and what the steps find."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..observables import check_events
from .config import ReportConfig

__all__ = ["ReportContext"]


@dataclass
class ReportContext:
    """The inputs of one report, checked (:meth:`build`), and what its steps add to them.

    Every step reads the inputs and the model events of the first step (``x_model``,
    ``theta_model``), and adds its results (``results``: ``{key: validation result}``), its
    verdicts (``verdicts``: ``{metric: (verdict, line)}``) and its figures (:meth:`save`).
    """

    model: Any
    truth: Any
    config: ReportConfig
    out: Path
    seed: int
    x_ref: torch.Tensor  # N d, float64
    theta_ref_rows: torch.Tensor  # N k, float64
    theta_note: str
    distinct: np.ndarray | None  # the reference's distinct θ points (at most 64), else None
    bounds: np.ndarray  # k 2, the model's training range
    rng: np.random.Generator
    results: dict = field(default_factory=dict)
    verdicts: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    x_model: torch.Tensor | None = None  # M d, float64
    theta_model: torch.Tensor | None = None  # M k, float64

    @classmethod
    def build(cls, model, reference_x, reference_theta, *, truth, out_dir, seed: int, config: ReportConfig):
        """Check the arguments of :func:`~gmmpyro.report.write_report` and create the report folder."""
        if not getattr(model, "is_fitted", False):
            raise ValueError("the model is not trained: train it or load a saved model first")
        names = [o.name for o in model.observables]
        params = list(model.params)
        if truth is not None and (list(truth.params) != params or [o.name for o in truth.observables] != names):
            raise ValueError(
                f"the truth has observables {[o.name for o in truth.observables]} and parameters "
                f"{list(truth.params)}; the model has {names} and {params}"
            )
        x_ref = torch.as_tensor(reference_x, dtype=torch.float64)
        if x_ref.dim() != 2 or x_ref.shape[0] == 0:
            raise ValueError(f"reference_x must have shape (N, {len(names)}), got {tuple(x_ref.shape)}")
        check_events(x_ref, model.observables, what="reference_x")
        N, k = x_ref.shape[0], len(params)
        bounds = model.theta_bounds.double().cpu().numpy()  # k 2
        theta_note = "given per event"
        if reference_theta is None:
            centre = bounds.mean(1)
            theta_rows = torch.as_tensor(centre).expand(N, k).clone()
            theta_note = f"not given: assumed the centre of the training range {centre.tolist()}"
        else:
            theta_rows = torch.as_tensor(reference_theta, dtype=torch.float64)
            if theta_rows.shape == (k,):
                theta_rows = theta_rows.expand(N, k).clone()
                theta_note = "one point for all events"
            if theta_rows.shape != (N, k):
                raise ValueError(f"reference_theta must have shape ({N}, {k}) or ({k},), got {tuple(theta_rows.shape)}")
            if not torch.isfinite(theta_rows).all():
                raise ValueError("reference_theta contains NaN or inf")
        distinct = np.unique(theta_rows.numpy(), axis=0)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return cls(
            model=model,
            truth=truth,
            config=config,
            out=out,
            seed=seed,
            x_ref=x_ref,
            theta_ref_rows=theta_rows,
            theta_note=theta_note,
            distinct=distinct if len(distinct) <= 64 else None,
            bounds=bounds,
            rng=np.random.default_rng(seed),
        )

    @property
    def names(self) -> list[str]:
        """The observables' names."""
        return [o.name for o in self.model.observables]

    @property
    def params(self) -> list[str]:
        """The parameters' names."""
        return list(self.model.params)

    @property
    def centre(self) -> np.ndarray:
        """The centre of the training range, shape ``(k,)``, to the decimal of a thousandth of its width.

        θ drawn at random spans its box up to a hair: the centre of ``[-1.49999, 1.49998]`` reads 0.
        """
        decimals = np.ceil(-np.log10(1e-3 * (self.bounds[:, 1] - self.bounds[:, 0]))).astype(int)
        # + 0.0: a centre that rounds to -0.0 reads 0
        return np.array([round(float(c), int(n)) + 0.0 for c, n in zip(self.bounds.mean(1), decimals, strict=True)])

    @property
    def half(self) -> np.ndarray:
        """Half the width of the training range, shape ``(k,)``."""
        return (self.bounds[:, 1] - self.bounds[:, 0]) / 2

    @property
    def shared(self) -> np.ndarray:
        """Per parameter, whether every reference event has the same value, shape ``(k,)``."""
        rows = self.theta_ref_rows.numpy()  # N k
        return np.all(rows == rows[:1], axis=0)

    @property
    def reference_point(self) -> np.ndarray:
        """The reference events' value of each parameter they all share, else the centre of the
        training range, shape ``(k,)`` (events at ``cx = 0.5`` and several ``cy`` on a ±1.5 range:
        ``[0.5, 0.0]``). The ``θ_ref`` of the dependence and mixture figures, and the true value of
        the profiled parameters in the inference check.
        """
        return np.where(self.shared, self.theta_ref_rows[0].numpy(), self.centre)

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Move each point onto the nearest values the reference events have, so simulated events
        exist there for the comparison; duplicates are dropped (first kept).

        Only parameters for which the reference has several values are moved: with one value the
        reference cannot show a dependence on that parameter, and snapping would collapse every
        point onto it. Without a list of distinct points (more than 64) nothing moves.

        Arguments:
            points: parameter points, shape ``(G, k)``.

        Returns:
            The points, shape ``(G', k)`` with ``G' ≤ G``.
        """
        out = points.copy()
        if self.distinct is None:
            return out
        for j in range(points.shape[1]):
            values = np.unique(self.distinct[:, j])
            if len(values) > 1:
                out[:, j] = values[np.abs(values[None, :] - points[:, j : j + 1]).argmin(1)]
        _, keep = np.unique(out, axis=0, return_index=True)
        return out[np.sort(keep)]

    def save(self, fig, name: str) -> None:
        """Write a figure as ``<name>.png`` into the report folder and close it."""
        import matplotlib.pyplot as plt

        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=self.config.dpi)
        plt.close(fig)
        self.figures.append(path)
