"""The reference toy model of the journal paper (Appendix A): an exact density and sampler.

Four observables ``x0, x1 ∈ [100, 800]``, ``x2 ∈ [-π, π]``, ``x3 ∈ R`` and parameters
``c = (cx, cy)``; with ``x0' = (x0 - 100)/700``, ``x1' = (x1 - 100)/700``, ``x2' = x2/π``:

.. math::

    p(x | c) = p_0(x_0 | c_x)\\, p_1(x_1 | x_0)\\, p_2(x_2 | c)\\, p_3(x_3 | c, x_1, x_2)

* ``p0``: exponential in ``x0'`` with rate ``k = 2(2 - |cx|)``, truncated to ``[0, 1]``;
* ``p1``: Gaussian in ``x1'`` centred on ``x0'`` with width ``σ1``, truncated to ``[0, 1]``;
* ``p2 ∝ (1 + 4x²/π² - 5x⁴/π⁴)(1 + 0.4 cx sin x + 0.5 cy cos x)``, normalised with the
  paper's antiderivative ``f2`` (A.5);
* ``p3 = q3(x3 + 0.6(√(4 + |cx|) + |cy|)(x1' + x2'))`` with the plateau ``q3`` of
  ``(α3, β3, γ3) = (10, 1, 1)``.

Reference: S. Menary, D. Price, "Learning to discover: expressive Gaussian mixture models for
multi-dimensional simulation and parameter inference in the physical sciences", Appendix A.
This module corrects four misprints of the paper:

1. A.4 prints ``x0' = 2(x0 - 100)/700 - 1``; the densities and samplers need
   ``(x0 - 100)/700`` (likewise ``x1'``), and ``x2' = x2/π``.
2. A.5 prints ``(x - β3)`` in both factors of ``q3``; the normaliser ``2(α3β3 + γ3) f3`` and
   the inverse CDF A.8 are those of the plateau with ``(t - β3)`` and ``(t + β3)``.
3. A.6 shifts the ``x3`` sample by ``x1* + x2*`` (raw values); the density uses ``x1' + x2'``.
4. A.6's ``x0`` sampler prints the rate ``2(2 - cx)``; it must be ``2(2 - |cx|)``.

``σ1`` is not given in the paper; the default here is ``σ1 = 0.2``.

Example:
    >>> model = ToyModel()
    >>> x = model.sample(3, [0.5, -0.5], seed=0)
    >>> x.shape
    torch.Size([3, 4])
    >>> bool(torch.isfinite(model.log_prob(x, [0.5, -0.5])).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import designs
from .networks import NetworkConfig
from .observables import Observable, check_events
from .training import TrainingConfig

__all__ = ["ToyModel", "paper_config", "paper_training_config"]

_LOG_700 = math.log(700.0)
# p2: polynomial (alpha2, beta2, gamma2) and modulation delta2 = 0.4 cx, eps2 = 0.5 cy
_A2, _B2, _G2 = 1.0, 4.0 / math.pi**2, -5.0 / math.pi**4
# q3 plateau; a3 = α3 β3 + γ3, log normaliser log(2 a3 f3) with f3 = 1/(α3 (1 - e^{-2 a3}))
_ALPHA3, _BETA3, _GAMMA3 = 10.0, 1.0, 1.0
_A3 = _ALPHA3 * _BETA3 + _GAMMA3
_LOG_Z3 = math.log(2.0 * _A3 / _ALPHA3) - math.log(-math.expm1(-2.0 * _A3))


def paper_config() -> NetworkConfig:
    """The network constants of the journal paper's Table 5 for the toy.

    The matching training settings (batch 500, learning rate 1e-3, factor 0.5, patience 2)
    are :func:`paper_training_config`.

    Example:
        >>> paper_config().n_gauss
        20
    """
    return NetworkConfig(
        n_gauss=20, A1=50, A2=0, B1=50, B2=20, C=2, D=3, s_f=0.01, s_mu=0.01, s_sigma=0.01, f_sigma=0.25
    )


def paper_training_config(**overrides) -> TrainingConfig:
    """The training settings of the journal paper's Table 5 for the toy, with ``overrides``.

    Example:
        >>> paper_training_config(max_epochs=50).batch_size
        500
    """
    settings = {"batch_size": 500, "learning_rate": 1e-3, "lr_factor": 0.5, "lr_patience": 2, **overrides}
    return TrainingConfig(**settings)


class _Observables(tuple):
    """A tuple of observables that may also be called: ``model.observables()`` is itself."""

    __slots__ = ()

    def __call__(self) -> _Observables:
        return self


def _where_log(v: torch.Tensor) -> torch.Tensor:
    """``log(v)`` with ``-inf`` for ``v <= 0`` and NaN-free gradients (double-where)."""
    pos = v > 0
    return torch.where(pos, torch.log(torch.where(pos, v, torch.ones_like(v))), -math.inf)


def _log_trunc_exp_norm(k: torch.Tensor) -> torch.Tensor:
    """``log(k / (1 - e^{-k}))``, the normaliser of ``e^{-k t}`` on ``[0, 1]``, for every real ``k``."""
    small = k.abs() < 1e-3
    ks = torch.where(small, torch.ones_like(k), k)
    big = torch.log(ks.abs()) + ks.clamp_max(0.0) - torch.log(-torch.expm1(-ks.abs()))
    return torch.where(small, k / 2 - k**2 / 24, big)  # series error O(k^4) < 1e-13


def _f2(x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """The paper's antiderivative ``f2(c, x)`` of the unnormalised ``p2`` (A.5)."""
    de, ep = 0.4 * cx, 0.5 * cy
    x2 = x * x
    poly4 = x2 * x2 - 12.0 * x2 + 24.0
    sin_coef = (
        _A2 * ep + 2 * _B2 * de * x + _B2 * ep * (x2 - 2) + 4 * _G2 * de * x * (x2 - 6) + _G2 * ep * poly4
    )
    cos_coef = (
        -_A2 * de + 2 * _B2 * ep * x - _B2 * de * (x2 - 2) + 4 * _G2 * ep * x * (x2 - 6) - _G2 * de * poly4
    )
    return (
        _A2 * x + _B2 / 3 * x2 * x + _G2 / 5 * x2 * x2 * x + sin_coef * torch.sin(x) + cos_coef * torch.cos(x)
    )


def _p2_unnorm(x: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """The unnormalised ``p2``: ``(1 + β2 x² + γ2 x⁴)(1 + 0.4 cx sin x + 0.5 cy cos x)``."""
    return (_A2 + _B2 * x**2 + _G2 * x**4) * (1 + 0.4 * cx * torch.sin(x) + 0.5 * cy * torch.cos(x))


def _x2_icdf(u: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, max_iter: int = 100) -> torch.Tensor:
    """Invert ``I2(c, x) = u`` (A.7) by Newton's method safeguarded with bisection.

    ``u, cx, cy`` broadcast. An element stops once its CDF residual is at rounding level
    (``64 eps``), its step or its bracket is below ``1e-12`` (float64); near ``±π``, where the
    density vanishes, the residual test ends the ping-pong of steps driven by rounding noise.
    Converged elements leave the working set, so the rare slow ones cost little.
    """
    u, cx, cy = torch.broadcast_tensors(u, cx, cy)
    shape = u.shape
    u, cx, cy = u.reshape(-1), cx.reshape(-1), cy.reshape(-1)  # M
    eps = torch.finfo(u.dtype).eps
    tol_x, tol_u = max(1e-12, 64 * eps), 64 * eps
    lo_f = _f2(torch.full_like(u, -math.pi), cx, cy)
    norm = _f2(torch.full_like(u, math.pi), cx, cy) - lo_f
    lo, hi = torch.full_like(u, -math.pi), torch.full_like(u, math.pi)
    x = (2 * u - 1) * math.pi
    out = torch.empty_like(u)
    idx = torch.arange(u.numel(), device=u.device)  # the working set, compacted as elements converge
    for _ in range(max_iter):
        if idx.numel() == 0:
            return out.reshape(shape)
        g = (_f2(x, cx, cy) - lo_f) / norm - u
        lo = torch.where(g <= 0, x, lo)
        hi = torch.where(g >= 0, x, hi)
        dens = _p2_unnorm(x, cx, cy) / norm
        newton = x - g / torch.where(dens > 0, dens, torch.ones_like(dens))
        ok = (dens > 0) & (newton >= lo) & (newton <= hi)  # inclusive: a converged x must stay put
        x_new = torch.where(g.abs() <= tol_u, x, torch.where(ok, newton, (lo + hi) / 2))
        done = (g.abs() <= tol_u) | ((x_new - x).abs() <= tol_x) | (hi - lo <= tol_x)
        out[idx[done]] = x_new[done]
        keep = ~done
        idx, x, u, cx, cy, lo, hi, lo_f, norm = (t[keep] for t in (idx, x_new, u, cx, cy, lo, hi, lo_f, norm))
    if idx.numel() == 0:
        return out.reshape(shape)
    raise RuntimeError(
        f"inverting the x2 CDF did not converge for {idx.numel()} value(s) in {max_iter} steps"
    )


class _PreparedToyEvents:
    """Fixed toy events, validated once; ``log_prob(theta (*batch, k))`` → ``(*batch, N)``."""

    def __init__(self, model: ToyModel, x: torch.Tensor) -> None:
        self.model = model
        self.events = x
        self.n_events = int(x.shape[0])

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        theta = self.model._as_theta(theta)
        return self.model._log_prob(self.events, theta.unsqueeze(-2))  # *batch N

    def __repr__(self) -> str:
        return f"PreparedToyEvents(n_events={self.n_events})"


def _batch_shape(x: torch.Tensor, theta: torch.Tensor) -> torch.Size:
    """The broadcast batch shape of events ``x (*, d)`` and parameters ``theta (*, k)``; ``ValueError`` if none."""
    try:
        return torch.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
    except RuntimeError as err:
        raise ValueError(f"batch shapes of x {tuple(x.shape)} and theta {tuple(theta.shape)} do not broadcast") from err


class ToyModel:
    """The exact toy density ``p(x | θ)`` of the journal's Appendix A, with its errata corrected.

    Implements :class:`gmmpyro.protocols.ConditionalDensity`, so the truth and a learned
    model go through the same inference code. See the module docstring for the density, the
    four corrected misprints of the paper, and the ``σ1`` choice.

    With ``x3_shift`` set, a third parameter ``nu`` (a nuisance-like shift) is added:
    ``p3(x3 | ...) = q3(x3 - x3_shift·nu + 0.6(√(4 + |cx|) + |cy|)(x1' + x2'))``, i.e.
    increasing ``nu`` by 1 moves every ``x3`` *up* by ``x3_shift``.

    Parameters ``θ`` for which the ``x2`` factor is not a density (``(0.4 cx)² + (0.5 cy)² > 1``,
    well outside :attr:`theta_bounds`) have zero likelihood: :meth:`log_prob` returns ``-inf``
    and :meth:`sample` raises.

    Arguments:
        sigma1: width of ``p(x1' | x0')`` (in units of the ``x1'`` range ``[0, 1]``).
        x3_shift: if not ``None``, add the parameter ``nu`` shifting ``x3`` by ``x3_shift·nu``.
        dtype: floating dtype of densities and samples.
        device: torch device of densities and samples.

    Attributes:
        observables: the four :class:`~gmmpyro.observables.Observable`; a tuple that can also
            be called, so ``model.observables()`` and ``model.observables[0]`` both work.
        params: ``("cx", "cy")``, or ``("cx", "cy", "nu")`` with ``x3_shift``.

    Example:
        >>> model = ToyModel(x3_shift=0.5)
        >>> model.params, [o.name for o in model.observables()]
        (('cx', 'cy', 'nu'), ['x0', 'x1', 'x2', 'x3'])
        >>> model.sample(100, torch.zeros(2, 3), seed=1).shape  # n batch d
        torch.Size([100, 2, 4])
        >>> x_lo = model.sample(100, [0.0, 0.0, 0.0], seed=1)
        >>> x_hi = model.sample(100, [0.0, 0.0, 1.0], seed=1)  # same seed, nu = 1
        >>> torch.allclose(x_hi[:, 3] - x_lo[:, 3], torch.tensor(0.5, dtype=torch.float64))
        True
    """

    paper_config = staticmethod(paper_config)

    def __init__(
        self,
        sigma1: float = 0.2,
        x3_shift: float | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if not (math.isfinite(sigma1) and sigma1 > 0):
            raise ValueError(f"sigma1 must be a positive finite number, got {sigma1!r}")
        if x3_shift is not None and not math.isfinite(x3_shift):
            raise ValueError(f"x3_shift must be finite or None, got {x3_shift!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.sigma1 = float(sigma1)
        self.x3_shift = None if x3_shift is None else float(x3_shift)
        self._dtype = dtype
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self.observables = _Observables(
            (
                Observable("x0", (100.0, 800.0)),
                Observable("x1", (100.0, 800.0)),
                Observable("x2", (-math.pi, math.pi)),
                Observable("x3"),
            )
        )
        self.params: tuple[str, ...] = ("cx", "cy") if x3_shift is None else ("cx", "cy", "nu")

    def __repr__(self) -> str:
        return (
            f"ToyModel(sigma1={self.sigma1}, x3_shift={self.x3_shift}, dtype={self._dtype}, "
            f"device={self._device})"
        )

    @property
    def theta_bounds(self) -> torch.Tensor:
        """``(k, 2)`` parameter range: ``cx, cy ∈ [-1.5, 1.5]`` (the paper's grid), ``nu ∈ [-5, 5]``."""
        rows = [[-1.5, 1.5], [-1.5, 1.5]] + ([[-5.0, 5.0]] if self.x3_shift is not None else [])
        return torch.tensor(rows, dtype=self._dtype, device=self._device)

    @property
    def device(self) -> torch.device:
        """Device of densities and samples."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of densities and samples."""
        return self._dtype

    # ----------------------------------------------------------------- validation
    def _as_theta(self, theta: torch.Tensor | Sequence) -> torch.Tensor:
        theta = torch.as_tensor(theta, dtype=self._dtype, device=self._device)
        k = len(self.params)
        if theta.dim() == 0 or theta.shape[-1] != k:
            raise ValueError(
                f"theta must have shape (..., {k}) for params {self.params}, got {tuple(theta.shape)}"
            )
        bad = ~torch.isfinite(theta)
        if bad.any():
            names = [p for i, p in enumerate(self.params) if bad[..., i].any()]
            raise ValueError(f"theta: NaN/inf value(s) in parameter(s) {names}")
        return theta

    def _as_events(self, x: torch.Tensor | Sequence) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=self._dtype, device=self._device)
        names = [o.name for o in self.observables]
        if x.dim() == 0 or x.shape[-1] != 4:
            raise ValueError(f"x must have shape (..., 4) for observables {names}, got {tuple(x.shape)}")
        bad = torch.isnan(x)
        if bad.any():
            which = [n for i, n in enumerate(names) if bad[..., i].any()]
            raise ValueError(f"x: NaN value(s) in observable(s) {which}")
        return x

    # ----------------------------------------------------------------- density
    def log_prob(self, x: torch.Tensor | Sequence, theta: torch.Tensor | Sequence) -> torch.Tensor:
        """Exact log density ``log p(x | θ)`` in data space.

        Arguments:
            x: events, shape ``(*, 4)``.
            theta: parameters, shape ``(*, k)``; the batch dimensions of ``x`` and ``theta``
                broadcast against each other.

        Returns:
            Log densities, shape ``broadcast(x.shape[:-1], theta.shape[:-1])``; ``-inf`` outside
            the support, differentiable in ``theta``.

        Example:
            >>> model = ToyModel()
            >>> x = torch.tensor([[300.0, 350.0, 0.5, -1.0], [90.0, 350.0, 0.5, -1.0]])  # N d
            >>> model.log_prob(x, torch.zeros(3, 1, 2)).shape  # theta G 1 k -> G N
            torch.Size([3, 2])
            >>> model.log_prob(x, [0.0, 0.0])[1]
            tensor(-inf, dtype=torch.float64)
        """
        return self._log_prob(self._as_events(x), self._as_theta(theta))

    def _log_prob(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self._log_prob_factors(x, theta).sum(-1)

    def _log_prob_factors(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The four conditional log densities ``log p_i``, shape ``(*, 4)``; inputs already validated."""
        shape = _batch_shape(x, theta)
        x0, x1, x2, x3 = x.unbind(-1)
        inside = (x0 >= 100) & (x0 <= 800) & (x1 >= 100) & (x1 <= 800) & (x2 >= -math.pi) & (x2 <= math.pi)
        inside = inside & torch.isfinite(x3)
        # clamp into the support so the masked-out branch stays finite (no NaN in values or grads)
        x0p = ((x0.clamp(100, 800) - 100) / 700).nan_to_num(0.0)
        x1p = ((x1.clamp(100, 800) - 100) / 700).nan_to_num(0.0)
        x2c = x2.clamp(-math.pi, math.pi).nan_to_num(0.0)
        x3c = torch.where(torch.isfinite(x3), x3, torch.zeros_like(x3))
        cx, cy = theta[..., 0], theta[..., 1]
        acx = cx.abs()

        k = 2 * (2 - acx)  # k <= 0 for |cx| >= 2 (beyond theta_bounds) is still a density
        lp0 = _log_trunc_exp_norm(k) - k * x0p - _LOG_700

        s1 = self.sigma1
        z = (x1p - x0p) / s1
        mass = torch.special.ndtr((1 - x0p) / s1) - torch.special.ndtr(
            -x0p / s1
        )  # a <= 0 <= b: no cancellation
        lp1 = -0.5 * z**2 - torch.log(mass) - math.log(s1 * math.sqrt(2 * math.pi)) - _LOG_700

        z2 = _f2(torch.full_like(cx, math.pi), cx, cy) - _f2(torch.full_like(cx, -math.pi), cx, cy)
        lp2 = (
            _where_log(_A2 + _B2 * x2c**2 + _G2 * x2c**4)
            + _where_log(1 + 0.4 * cx * torch.sin(x2c) + 0.5 * cy * torch.cos(x2c))
            - _where_log(z2)
        )
        theta_ok = (0.4 * cx) ** 2 + (0.5 * cy) ** 2 <= 1  # otherwise p2 would go negative somewhere

        t = x3c + 0.6 * (torch.sqrt(4 + acx) + cy.abs()) * (x1p + x2c / math.pi)
        if self.x3_shift is not None:
            t = t - self.x3_shift * theta[..., 2]
        # log(1 + e^z) as logaddexp(0, z): F.softplus switches to z above 20, an error of 2e-9
        zero = torch.zeros_like(t)
        lp3 = (
            -torch.logaddexp(zero, _ALPHA3 * (t - _BETA3) - _GAMMA3)
            - torch.logaddexp(zero, -_ALPHA3 * (t + _BETA3) - _GAMMA3)
            - _LOG_Z3
        )

        ok = (inside & theta_ok).expand(shape)
        lps = [torch.where(ok, lp.expand(shape), -math.inf) for lp in (lp0, lp1, lp2, lp3)]
        return torch.stack(lps, -1)  # * 4

    def prepare(self, x: torch.Tensor | Sequence) -> _PreparedToyEvents:
        """Validate ``N`` observed events once for repeated likelihood evaluations.

        Arguments:
            x: events, shape ``(N, 4)``, inside the support (checked; a ``ValueError`` names
                the offending observable).

        Returns:
            An object with ``n_events`` and ``log_prob(theta)``: ``theta (*batch, k)`` →
            per-event log densities ``(*batch, N)``.

        Example:
            >>> model = ToyModel()
            >>> prepared = model.prepare(model.sample(5, [0.0, 0.0], seed=0))
            >>> prepared.n_events, prepared.log_prob(torch.zeros(7, 2)).shape
            (5, torch.Size([7, 5]))
        """
        x = self._as_events(x)
        if x.dim() != 2:
            raise ValueError(f"x must have shape (N, 4), got {tuple(x.shape)}")
        check_events(x, self.observables)
        return _PreparedToyEvents(self, x)

    # ----------------------------------------------------------------- sampling
    def sample(self, n: int, theta: torch.Tensor | Sequence, seed: int | None = None) -> torch.Tensor:
        """Draw exact samples by inverse-CDF sampling of each conditional (A.6-A.8, corrected).

        Uses a private ``torch.Generator`` (the global RNG is neither used nor changed).

        Arguments:
            n: number of events per parameter point.
            theta: parameters, shape ``(*batch, k)``.
            seed: seed of the generator; ``None`` for a fresh random seed.

        Returns:
            Events, shape ``(n, *batch, 4)``, with the model's dtype and device.

        Example:
            >>> x = ToyModel().sample(4, torch.zeros(2, 3, 2), seed=0)
            >>> x.shape
            torch.Size([4, 2, 3, 4])
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        theta = self._as_theta(theta).detach()
        cx, cy = theta[..., 0], theta[..., 1]
        invalid = (0.4 * cx) ** 2 + (0.5 * cy) ** 2 > 1
        if invalid.any():
            raise ValueError("theta: (0.4 cx)^2 + (0.5 cy)^2 must be <= 1 for p(x2 | c) to be a density")
        gen = torch.Generator(device=self._device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        # inversion in float64 (float32 on MPS, which lacks it), then cast to the model dtype
        work = torch.float32 if self._device.type == "mps" else torch.float64
        theta = theta.to(work)
        cx, cy = theta[..., 0], theta[..., 1]
        shape = (4, n, *theta.shape[:-1])  # 4 n *batch
        u = torch.rand(shape, generator=gen, dtype=work, device=self._device)
        u = u.clamp_min(torch.finfo(work).tiny)
        acx = cx.abs()

        k = 2 * (2 - acx)  # erratum 4: |cx|
        k_safe = torch.where(k == 0, torch.ones_like(k), k)
        x0p = torch.where(k == 0, u[0], -torch.log1p(u[0] * torch.expm1(-k_safe)) / k_safe).clamp(0, 1)

        # truncated normal on [a, b], a <= 0 <= b: invert from the side whose ndtr values stay far from 1
        s1 = self.sigma1
        a, b = -x0p / s1, (1 - x0p) / s1
        ndtr, ndtri = torch.special.ndtr, torch.special.ndtri
        z_left = ndtri(ndtr(a) + u[1] * (ndtr(b) - ndtr(a)))
        z_right = -ndtri(ndtr(-a) - u[1] * (ndtr(-a) - ndtr(-b)))
        z = torch.where(a + b > 0, z_right, z_left)
        x1p = (x0p + s1 * z).clamp(0, 1)

        x2 = _x2_icdf(u[2], cx, cy).clamp(-math.pi, math.pi)

        # plateau inverse CDF (A.8) written with expm1 so that u -> 0 and u -> 1 stay accurate
        t = (
            torch.log(torch.expm1(2 * _A3 * u[3])) - _A3 - torch.log(-torch.expm1(2 * _A3 * (u[3] - 1)))
        ) / _ALPHA3
        x3 = t - 0.6 * (torch.sqrt(4 + acx) + cy.abs()) * (x1p + x2 / math.pi)  # erratum 3: primed
        if self.x3_shift is not None:
            x3 = x3 + self.x3_shift * theta[..., 2]

        x = torch.stack([100 + 700 * x0p, 100 + 700 * x1p, x2, x3], -1).to(self._dtype)  # n *batch 4
        x[..., :2] = x[..., :2].clamp(100.0, 800.0)
        x[..., 2] = x[..., 2].clamp(-math.pi, math.pi)
        return x

    def simulate(
        self, theta: torch.Tensor | Sequence, *, seed: int | None = None, score: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One event per parameter point, as a simulator run on a design (:mod:`gmmpyro.designs`).

        Row ``i`` of the result is drawn from ``p(x | θ_i)``, independently of the other rows,
        by the sampler of :meth:`sample` in one vectorised pass: ``simulate(θ)`` is
        ``sample(1, θ)[0]``, so rows that all equal ``θ0`` give the events of
        ``sample(N, θ0)`` for the same seed.

        Arguments:
            theta: parameters, shape ``(N, k)``, one row per event.
            seed: seed of the sampler; ``None`` for a fresh random seed.
            score: also return the joint score of each event at its own ``θ``
                (see :meth:`score`), e.g. for the ``score`` argument of
                :func:`gmmpyro.training.train`.

        Returns:
            Events, shape ``(N, 4)``; with ``score=True`` the pair ``(x, t)`` with the scores
            ``t``, shape ``(N, k)``.

        Example:
            >>> model = ToyModel()
            >>> theta = torch.tensor([[0.5, -0.5], [1.0, 0.0], [-1.2, 1.4]])  # N k
            >>> x, t = model.simulate(theta, seed=0, score=True)
            >>> x.shape, t.shape
            (torch.Size([3, 4]), torch.Size([3, 2]))
        """
        theta = self._as_theta(theta)
        if theta.dim() != 2:
            raise ValueError(f"theta must have shape (N, {len(self.params)}), got {tuple(theta.shape)}")
        x = self.sample(1, theta, seed=seed)[0]  # N 4
        return (x, self.score(x, theta)) if score else x

    def score(self, x: torch.Tensor | Sequence, theta: torch.Tensor | Sequence) -> torch.Tensor:
        """The exact score ``t = ∇θ log p(x | θ)`` of each event.

        The toy has no latent variables, so this is both the joint score a simulator would
        record and the score of the density. It is the autograd gradient of :meth:`log_prob`:
        ``θ`` is expanded to one row per event, so the gradient of the summed log densities
        with respect to those rows holds every event's own score in one backward pass.

        The density depends on ``|cx|`` and ``|cy|`` and has a kink at ``cx = 0`` and at
        ``cy = 0``; there the derivative of ``|c|`` is taken as ``0``, which makes the score
        the mean of its one-sided limits (what a central finite difference gives). Its
        expectation at ``θ`` is still ``0``, as each one-sided score's is.

        Arguments:
            x: events, shape ``(*, 4)``.
            theta: parameters, shape ``(*, k)``; the batch dimensions broadcast.

        Returns:
            Scores, shape ``(*batch, k)`` with ``*batch`` the broadcast batch shape.

        Raises:
            ValueError: an event has zero density at its ``θ`` (outside the support, or ``θ``
                where ``p(x2 | c)`` is not a density), so it has no score.

        Example:
            >>> model = ToyModel()
            >>> x = torch.tensor([[300.0, 350.0, 0.5, -1.0], [500.0, 450.0, -1.0, 0.0]])  # N d
            >>> model.score(x, [0.5, -0.5]).shape  # N k
            torch.Size([2, 2])
        """
        x, theta = self._as_events(x), self._as_theta(theta)
        shape = _batch_shape(x, theta)
        rows = theta.detach().expand(*shape, theta.shape[-1]).clone().requires_grad_(True)  # * k
        with torch.enable_grad():
            log_p = self._log_prob(x, rows)  # *
            (grad,) = torch.autograd.grad(log_p.sum(), rows)
        zero = ~torch.isfinite(log_p)
        if zero.any():
            raise ValueError(f"{int(zero.sum())} event(s) have zero density at their θ, so no score")
        return grad

    def grid_dataset(
        self, n_per_point: int, grid: torch.Tensor | Sequence | None = None, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training data: ``n_per_point`` events at each point of a parameter grid.

        Arguments:
            n_per_point: events per grid point (the paper uses 50k).
            grid: parameter points, shape ``(G, k)``; for a model with ``nu`` a ``(G, 2)`` grid
                means ``nu = 0``. Default: the paper's 49 points ``cx, cy ∈ {-1.5, -1, ..., 1.5}``
                (``nu = 0``).
            seed: seed of the sampler.

        Returns:
            ``(x, theta)``: events ``(G·n, 4)`` and their parameters ``(G·n, k)``, grid-point major.

        Example:
            >>> x, theta = ToyModel().grid_dataset(10, seed=0)
            >>> x.shape, theta.shape
            (torch.Size([490, 4]), torch.Size([490, 2]))
        """
        k = len(self.params)
        if grid is None:
            grid = designs.grid(7, self.theta_bounds[:2])  # the paper's -1.5, -1, ..., 1.5
        grid = torch.as_tensor(grid, dtype=self._dtype, device=self._device)
        if grid.dim() == 2 and k == 3 and grid.shape[1] == 2:
            grid = torch.cat([grid, torch.zeros_like(grid[:, :1])], 1)
        if grid.dim() != 2 or grid.shape[1] != k:
            raise ValueError(
                f"grid must have shape (G, {k}) for params {self.params}, got {tuple(grid.shape)}"
            )
        x = self.sample(n_per_point, grid, seed=seed)  # n G 4
        x = x.transpose(0, 1).reshape(-1, 4)  # G*n 4
        theta = grid.repeat_interleave(n_per_point, dim=0)  # G*n k
        return x, theta
