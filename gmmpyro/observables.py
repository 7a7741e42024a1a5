"""Observables: what one column of an event is and where it may live."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import constraints

__all__ = ["Observable", "as_events", "check_events", "real_tensor"]


@dataclass(frozen=True)
class Observable:
    """One observable (one column of the events).

    Arguments:
        name: a unique name, used in errors, plots and saved files.
        bounds: ``(lo, hi)`` hard bounds of the physical domain, or ``None`` for an
            unbounded real observable.
        discrete: integer-valued observable taking the values ``lo, lo + 1, ..., hi``;
            it needs integer bounds and is modelled by a categorical network, not projected.
        f: weight of the linear ramp in the projection's response curve;
            ``f = 1`` is a pure linear rescaling, ``f = 0`` the empirical CDF alone.

    Example:
        >>> Observable("m_ll", bounds=(75.0, 105.0))
        Observable(name='m_ll', bounds=(75.0, 105.0), discrete=False, f=0.5)
        >>> Observable("n_jets", bounds=(0, 4), discrete=True).n_categories
        5
    """

    name: str
    bounds: tuple[float, float] | None = None
    discrete: bool = False
    f: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an observable needs a non-empty string name, got {self.name!r}")
        if self.bounds is not None:
            if len(self.bounds) != 2:
                raise ValueError(f"observable {self.name!r}: bounds must be (lo, hi), got {self.bounds!r}")
            lo, hi = (float(b) for b in self.bounds)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(
                    f"observable {self.name!r}: bounds must be finite with lo < hi, got {self.bounds!r}"
                )
            object.__setattr__(self, "bounds", (lo, hi))
        if self.discrete:
            if self.bounds is None:
                raise ValueError(f"discrete observable {self.name!r} needs integer bounds (lo, hi)")
            if any(b != round(b) for b in self.bounds):
                raise ValueError(
                    f"discrete observable {self.name!r} needs integer bounds, got {self.bounds!r}"
                )
        if not 0.0 <= float(self.f) <= 1.0:
            raise ValueError(f"observable {self.name!r}: f must lie in [0, 1], got {self.f!r}")
        object.__setattr__(self, "f", float(self.f))

    @property
    def bounded(self) -> bool:
        """Whether the observable has hard bounds."""
        return self.bounds is not None

    @property
    def n_categories(self) -> int:
        """Number of values of a discrete observable."""
        if not self.discrete:
            raise ValueError(f"observable {self.name!r} is continuous")
        lo, hi = self.bounds
        return int(hi - lo) + 1

    @property
    def support(self) -> constraints.Constraint:
        """The domain as a ``torch.distributions`` constraint."""
        if self.discrete:
            lo, hi = self.bounds
            return constraints.integer_interval(int(lo), int(hi))
        if self.bounds is None:
            return constraints.real
        return constraints.interval(*self.bounds)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable description."""
        return {"name": self.name, "bounds": self.bounds, "discrete": self.discrete, "f": self.f}

    @classmethod
    def from_dict(cls, data: dict) -> Observable:
        """Inverse of :meth:`to_dict`."""
        bounds = data.get("bounds")
        return cls(data["name"], tuple(bounds) if bounds is not None else None, data["discrete"], data["f"])


def check_events(x: torch.Tensor, observables: Sequence[Observable], *, what: str = "x") -> None:
    """Raise a ``ValueError`` naming the observable if ``x`` is not a valid batch of events.

    Checks the number of columns, NaN/inf, values outside the bounds and non-integer values
    of discrete observables.

    Arguments:
        x: events, shape ``(*, d)``.
        observables: the ``d`` observables.
        what: how to call ``x`` in error messages.

    Example:
        >>> check_events(torch.tensor([[0.5]]), [Observable("a", (0.0, 1.0))])
        >>> check_events(torch.tensor([[1.5]]), [Observable("a", (0.0, 1.0))])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x: 1 value(s) of observable 'a' lie outside its bounds (0.0, 1.0), e.g. 1.5, 0.5 above the ...
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{what} must hold real numbers, got dtype {str(x.dtype).removeprefix('torch.')}")
    d = len(observables)
    if x.dim() == 0 or x.shape[-1] != d:
        names = [o.name for o in observables]
        raise ValueError(f"{what} must have shape (..., {d}) for observables {names}, got {tuple(x.shape)}")
    for i, obs in enumerate(observables):
        col = x[..., i]
        bad = ~torch.isfinite(col)
        if bad.any():
            raise ValueError(f"{what}: {int(bad.sum())} NaN/inf value(s) in observable {obs.name!r}")
        if obs.bounds is not None:
            lo, hi = obs.bounds
            out = (col < lo) | (col > hi)
            if out.any():
                example = col[out].flatten()[0].item()
                side, bound = ("below the lower", lo) if example < lo else ("above the upper", hi)
                raise ValueError(
                    f"{what}: {int(out.sum())} value(s) of observable {obs.name!r} lie outside its bounds "
                    f"{obs.bounds}, e.g. {example!r}, {abs(example - bound):.3g} {side} bound"
                )
        if obs.discrete:
            frac = col != torch.round(col)
            if frac.any():
                raise ValueError(f"{what}: discrete observable {obs.name!r} has non-integer values")


def real_tensor(value, *, dtype: torch.dtype, device, what: str = "x") -> torch.Tensor:
    """``value`` as a tensor of the real ``dtype`` on ``device``; complex, boolean or non-numeric input raises.

    Example:
        >>> real_tensor([1, 2], dtype=torch.float64, device="cpu")
        tensor([1., 2.], dtype=torch.float64)
        >>> real_tensor([True], dtype=torch.float64, device="cpu")
        Traceback (most recent call last):
        ...
        TypeError: x must hold real numbers, got dtype bool
    """
    if isinstance(value, torch.Tensor):
        source = value.dtype
        ok = not (value.is_complex() or source == torch.bool)
    else:
        value = np.asarray(value)
        source, ok = value.dtype, value.dtype.kind in "iuf"
    if not ok:
        raise TypeError(f"{what} must hold real numbers, got dtype {str(source).removeprefix('torch.')}")
    return torch.as_tensor(value, dtype=dtype, device=device)


def as_events(x, observables: Sequence[Observable], *, dtype: torch.dtype, device, what: str = "x") -> torch.Tensor:
    """Events as a real ``(*, d)`` tensor; values within one rounding step of a bound set onto it.

    A bound such as π is not representable: ``float32(π)`` lies 8.7e-8 above π, and a value
    written at the bound in one precision may land just outside it in another. Values
    outside a bound by at most one unit in the last place (ulp) of the coarser of the input's
    and ``dtype``'s precision are therefore taken as lying on the bound; anything further out
    is left for :func:`check_events` to report (or a density to score as outside its support).

    Example:
        >>> x2 = Observable("x2", (-math.pi, math.pi))
        >>> float(as_events(torch.tensor([[math.pi]], dtype=torch.float32), [x2], dtype=torch.float64, device="cpu"))
        3.141592653589793
    """
    source = x.dtype if isinstance(x, torch.Tensor) else np.asarray(x).dtype
    events = real_tensor(x, dtype=dtype, device=device, what=what)
    d = len(observables)
    if events.dim() == 0 or events.shape[-1] != d:
        return events  # the shape error is check_events' to report
    bounds = [o.bounds if o.bounds is not None and not o.discrete else (-math.inf, math.inf) for o in observables]
    lo, hi, tol_lo, tol_hi = (
        torch.tensor(v, dtype=torch.float64, device=events.device)
        for v in zip(*((a, b, _ulp(a, dtype, source), _ulp(b, dtype, source)) for a, b in bounds), strict=True)
    )  # d each
    exact = events.to(torch.float64)  # a float32 comparison with bound ± tolerance would round the tolerance
    near = ((exact < lo) & (exact >= lo - tol_lo)) | ((exact > hi) & (exact <= hi + tol_hi))
    return torch.where(near, torch.minimum(torch.maximum(events, lo.to(dtype)), hi.to(dtype)), events)


def _ulp(bound: float, dtype: torch.dtype, source) -> float:
    """One unit in the last place of ``bound`` in the coarser of ``dtype`` and the input's ``source`` dtype."""
    if not math.isfinite(bound):
        return 0.0
    eps = [torch.finfo(dtype).eps]
    if isinstance(source, torch.dtype) and source.is_floating_point:
        eps.append(torch.finfo(source).eps)
    elif isinstance(source, np.dtype) and source.kind == "f":
        eps.append(float(np.finfo(source).eps))
    tiny = torch.finfo(dtype).tiny
    return max(eps) * (tiny if bound == 0 else 2.0 ** math.floor(math.log2(abs(bound))))
