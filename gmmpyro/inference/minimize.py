"""A batched damped-Newton minimiser: many independent small problems in one tensor.

Used for the several starts of a fit and for the conditional fits at every point of a
profile scan: ``fun(x (b, m), rows (b,)) -> (b,)`` scores any subset ``rows`` of ``B``
independent problems at once, so the model sees one batched call per iteration instead of
``B`` Python calls.

Each problem takes Levenberg–Marquardt-damped Newton steps with its exact Hessian (from
autograd), its own damping and its own step acceptance; a problem leaves the batch once its
estimated distance to the minimum, ``edm = ½ gᵀ H⁻¹ g`` (as in MINUIT), is below ``tol``
and one more Newton step has been taken (which, converging quadratically, usually brings the
minimum to machine precision).
Box bounds are handled by a smooth change of variables (sigmoid for two-sided, softplus for
one-sided bounds), as MINUIT does with its sine transform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["BoxTransform", "Minimum", "minimize"]


class BoxTransform:
    """Smooth bijection between unconstrained ``u`` and ``x`` in a box ``[lo, hi]`` (per column).

    Arguments:
        lo, hi: bounds, shape ``(m,)``; ``±inf`` for an open side.

    Example:
        >>> t = BoxTransform(torch.tensor([0.0, -torch.inf]), torch.tensor([1.0, torch.inf]))
        >>> x = torch.tensor([[0.25, 3.0]])
        >>> torch.allclose(t.forward(t.inverse(x)), x)
        True
    """

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if torch.any(lo >= hi):
            raise ValueError(f"bounds need lo < hi, got lo={lo.tolist()}, hi={hi.tolist()}")
        self.has_lo, self.has_hi = torch.isfinite(lo), torch.isfinite(hi)
        self.both = self.has_lo & self.has_hi
        # finite stand-ins for open sides keep the unused where-branches (and their gradients) finite
        self.lo = torch.where(self.has_lo, lo, torch.zeros_like(lo))
        self.hi = torch.where(self.has_hi, hi, torch.ones_like(hi))
        self.span = torch.where(self.both, self.hi - self.lo, torch.ones_like(lo))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        two = self.lo + self.span * torch.sigmoid(u)
        low = self.lo + torch.nn.functional.softplus(u)
        high = self.hi - torch.nn.functional.softplus(-u)
        return torch.where(self.both, two, torch.where(self.has_lo, low, torch.where(self.has_hi, high, u)))

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        tiny = torch.finfo(x.dtype).eps
        p = ((x - self.lo) / self.span).clamp(tiny, 1 - tiny)
        two = torch.log(p) - torch.log1p(-p)
        a = (x - self.lo).clamp_min(tiny)  # softplus⁻¹(a) = a + log(1 - e^-a)
        low = a + torch.log(-torch.expm1(-a))
        b = (self.hi - x).clamp_min(tiny)
        high = -(b + torch.log(-torch.expm1(-b)))
        return torch.where(self.both, two, torch.where(self.has_lo, low, torch.where(self.has_hi, high, x)))


@dataclass(frozen=True)
class Minimum:
    """Result of :func:`minimize` for a batch of ``B`` problems.

    Attributes:
        x: the minima, shape ``(B, m)``.
        fun: objective at ``x``, shape ``(B,)``.
        edm: estimated distance to the minimum ``½ gᵀ H⁻¹ g``, shape ``(B,)``.
        converged: ``edm < tol`` with a positive-definite Hessian, shape ``(B,)``.
        n_iter: Newton iterations taken, shape ``(B,)``.
    """

    x: torch.Tensor
    fun: torch.Tensor
    edm: torch.Tensor
    converged: torch.Tensor
    n_iter: torch.Tensor


def _derivatives(
    fun: Callable, u: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Value ``(b,)``, gradient ``(b, m)`` and Hessian ``(b, m, m)`` of independent rows."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        f = fun(u, rows)  # b
        (g,) = torch.autograd.grad(f.sum(), u, create_graph=True)  # b m
        rows = []
        m = u.shape[-1]
        for j in range(m):
            if g.requires_grad:
                (h,) = torch.autograd.grad(g[:, j].sum(), u, retain_graph=j < m - 1, allow_unused=True)
            else:
                h = None
            rows.append(torch.zeros_like(u) if h is None else h)
    return f.detach(), g.detach(), torch.stack(rows, 1).detach()  # b ; b m ; b m m


def minimize(
    fun: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    lo: torch.Tensor | None = None,
    hi: torch.Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> Minimum:
    """Minimise ``B`` independent functions at once by damped Newton steps.

    Arguments:
        fun: ``fun(x, rows)`` with ``x (b, m)`` the points of problems ``rows (b,)`` (indices
            into the batch) returns their objectives ``(b,)``; twice differentiable in ``x``;
            ``inf``/``NaN`` marks a point to avoid.
        x0: starting points, shape ``(B, m)``, inside the bounds with finite ``fun``.
        lo, hi: box bounds, shape ``(m,)`` (``±inf`` for none).
        tol: convergence threshold on ``edm``, in units of ``fun``, raised to 2 ulps of ``|fun|``
            where that is larger (float32 models). A problem that can make no more progress (or
            runs out of iterations) also counts as converged if its ``edm`` is below 16 ulps.
        max_iter: most Newton iterations per problem.

    Returns:
        A :class:`Minimum`.

    Example:
        >>> target = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
        >>> def fun(x, rows):  # b m, b -> b
        ...     return ((x - target[rows]) ** 2).sum(-1) + (x**4).sum(-1)
        >>> res = minimize(fun, torch.zeros(2, 2, dtype=torch.float64))
        >>> bool(res.converged.all()), res.x.shape
        (True, torch.Size([2, 2]))
    """
    B, m = x0.shape
    inf = torch.tensor(torch.inf, dtype=x0.dtype, device=x0.device)
    lo = -inf.expand(m) if lo is None else lo
    hi = inf.expand(m) if hi is None else hi
    box = BoxTransform(lo, hi)

    def inner(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return fun(box.forward(u), rows)

    eps = torch.finfo(x0.dtype).eps
    u = box.inverse(x0).clone()  # B m
    f = torch.full((B,), torch.nan, dtype=x0.dtype, device=x0.device)
    g = torch.zeros_like(u)
    H = torch.zeros(B, m, m, dtype=x0.dtype, device=x0.device)
    edm = torch.full_like(f, torch.inf)
    lam = torch.zeros_like(f)  # damping, relative to the largest Hessian eigenvalue
    stale = torch.ones(B, dtype=torch.bool, device=x0.device)  # derivatives need recomputing
    active = torch.ones_like(stale)
    converged = torch.zeros_like(stale)
    ready = torch.zeros_like(stale)
    n_iter = torch.zeros(B, dtype=torch.long, device=x0.device)

    for _ in range(max_iter + 1):
        need = active & stale
        if need.any():
            idx = need.nonzero().squeeze(-1)
            f[idx], g[idx], H[idx] = _derivatives(inner, u[idx], idx)
            stale[idx] = False
        bad = active & ~(torch.isfinite(f) & torch.isfinite(g).all(-1) & torch.isfinite(H).flatten(1).all(-1))
        active &= ~bad
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        e, V = torch.linalg.eigh(0.5 * (H[idx] + H[idx].transpose(-1, -2)))  # b m ; b m m
        emax = e.abs().amax(-1).clamp_min(torch.finfo(e.dtype).tiny)  # b
        # saddle-free: |eigenvalues|, floored so that a flat direction (a saturated bound) gives no 0/0
        e_abs = torch.maximum(e.abs(), (1e-10 * emax[:, None]).clamp_min(torch.finfo(e.dtype).tiny))
        gv = (V.transpose(-1, -2) @ g[idx].unsqueeze(-1)).squeeze(-1)  # b m
        edm[idx] = 0.5 * (gv**2 / e_abs).sum(-1)
        pd = (e > 0).all(-1)
        # below ~2 ulps of |f| no step can be verified to lower f (float32 models reach this first)
        small = pd & (edm[idx] < torch.clamp(2 * eps * f[idx].abs(), min=tol))
        done = small & ready[idx]  # one more (cheap, quadratically convergent) step once edm < tol
        ready[idx] = small
        # no progress possible (steps rejected at any damping, or out of iterations): accept an
        # edm at the rounding level of f, which float32 models may not get below
        stuck = (lam[idx] > 1e10) | (n_iter[idx] >= max_iter)
        noisy = pd & (edm[idx] < torch.clamp(16 * eps * f[idx].abs(), min=tol))
        converged[idx[done | (stuck & noisy)]] = True
        active[idx[done | stuck]] = False
        keep = ~(done | stuck)
        idx, e_abs, V, gv, emax = idx[keep], e_abs[keep], V[keep], gv[keep], emax[keep]
        if idx.numel() == 0:
            break
        step = -(V @ (gv / (e_abs + lam[idx, None] * emax[:, None])).unsqueeze(-1)).squeeze(-1)  # b m
        with torch.no_grad():
            f_trial = inner(u[idx] + step, idx)  # b
        ok = torch.isfinite(f_trial) & (f_trial <= f[idx] + 4 * eps * f[idx].abs())
        acc, rej = idx[ok], idx[~ok]
        u[acc] += step[ok]
        stale[acc] = True
        lam[acc] = torch.where(lam[acc] < 1e-3, 0.0, lam[acc] / 10)
        lam[rej] = torch.where(lam[rej] == 0, 1e-2, lam[rej] * 10)
        n_iter[idx] += 1

    return Minimum(x=box.forward(u).detach(), fun=f, edm=edm, converged=converged, n_iter=n_iter)
