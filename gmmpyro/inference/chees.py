"""Many HMC chains advanced in lockstep, with ChEES adaptation of the trajectory length.

Every chain takes the same number of leapfrog steps in an iteration, so each step is one
batched :meth:`~gmmpyro.inference.target.Target.value_and_grad` call for all ``K`` chains (no
per-chain tree building as in NUTS). Warm-up adapts three settings from statistics pooled
over the chains (Hoffman, Radul & Sountsov 2021, "An adaptive MCMC scheme for setting
trajectory lengths in Hamiltonian Monte Carlo", AISTATS, PMLR 130:3907):

- the trajectory length ``T``: Adam ascent in ``log T`` on the ChEES criterion
  ``¼ E[(‖y' − E y‖² − ‖y − E y‖²)²]``, the change over one transition of each chain's
  contribution to the estimate of the second moment, in whitened coordinates ``y = L⁻¹ z``,
  divided by the iteration's integration time ``t`` (ChEES per gradient, as fun_mc's
  ``chees_per_grad_criterion``; ``BatchedHMCConfig(criterion="chees")`` for the paper's);
  each iteration integrates for ``t = u·T`` with ``u`` running through the van der Corput
  sequence in ``(0, 1)``, a jitter that keeps a fixed length from resonating with a period of
  the dynamics; ``T`` is kept at least the step size the search found, not the up to 10×
  larger ones dual averaging tries first (a short warm-up would not bring it down again);
- the step size ``ε``: dual averaging (Hoffman & Gelman 2014, arXiv:1111.4246) of the mean
  Metropolis acceptance probability across chains;
- the mass matrix ``M⁻¹ = L Lᵀ``: the chains' pooled (co)variance over windows of doubling
  length between 15 % and 90 % of warm-up, as Stan does, regularised towards ``10⁻³ I``.

Draws after warm-up use the iterate averages of ``ε`` and ``log T`` and keep the jitter.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .._progress import progress_bar
from .target import Target

__all__ = ["BatchedHMCConfig", "BatchedHMCResult", "run_batched_hmc"]

logger = logging.getLogger(__name__)

_STATS = ("lp", "diverging", "energy", "step_size", "n_steps", "acceptance_rate")
_MAX_ENERGY_ERROR = 1000.0
_MIN_WARMUP_FOR_MASS = 50
_CRITERION_POWER = {"chees": 0.0, "chees_per_gradient": 1.0}  # the criterion is ChEES / t**power


@dataclass(frozen=True)
class BatchedHMCConfig:
    """Settings of :func:`run_batched_hmc`.

    Arguments:
        target_accept_prob: target of the step-size adaptation. 0.651 is the optimum of
            Beskos et al. (2013, arXiv:1001.4460) for HMC with a fixed trajectory length, the
            ChEES paper's choice; NUTS' 0.8 would buy smaller steps that a fixed-length
            trajectory does not need.
        max_leapfrog_steps: most leapfrog steps in one iteration; the trajectory length is
            capped at this many step sizes.
        init_step_size: where the step-size search starts (in whitened units). The search,
            run before warm-up and after every mass-matrix update, doubles or halves it until
            the chains' mean acceptance of one leapfrog step crosses ½.
        dense_mass: adapt a dense mass matrix (else a diagonal one). On a 2-D Gaussian with
            correlation 0.9 (64 chains, 200 + 200 iterations, three seeds) it gives ~1.4× the
            bulk ESS per gradient of a diagonal one after warm-up (0.16 against 0.12) and needs
            fewer gradients in warm-up; with few parameters its ``k × k`` products cost nothing.
        criterion: what the trajectory length maximises: ``"chees_per_gradient"`` (ChEES
            divided by the integration time, which is proportional to the gradients spent) or
            ``"chees"`` (the ChEES paper's). On the exact toy posterior per gradient gave 3.2× the
            bulk ESS/s of ChEES with 4 chains, 0.82× with 64 and 1.6× with 1024 (one run; with an
            earlier warm-up that let ``T`` grow too long, 1.4–1.6× with 64 chains, 1.4–1.9× on
            separated modes, 1.7× on a funnel; ``docs/benchmarks.md``, Samplers).

    Example:
        >>> BatchedHMCConfig(dense_mass=False).max_leapfrog_steps
        1000
    """

    target_accept_prob: float = 0.651
    max_leapfrog_steps: int = 1000
    init_step_size: float = 0.1
    dense_mass: bool = True
    criterion: str = "chees_per_gradient"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the bad setting."""
        if not 0.0 < self.target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {self.target_accept_prob!r}")
        if not _is_int(self.max_leapfrog_steps) or self.max_leapfrog_steps < 1:
            raise ValueError(f"max_leapfrog_steps must be a positive integer, got {self.max_leapfrog_steps!r}")
        if not (isinstance(self.init_step_size, int | float) and 0.0 < self.init_step_size < math.inf):
            raise ValueError(f"init_step_size must be a positive finite number, got {self.init_step_size!r}")
        if not isinstance(self.dense_mass, bool):
            raise ValueError(f"dense_mass must be True or False, got {self.dense_mass!r}")
        if self.criterion not in _CRITERION_POWER:
            raise ValueError(f"criterion must be one of {sorted(_CRITERION_POWER)}, got {self.criterion!r}")


@dataclass(frozen=True)
class BatchedHMCResult:
    """Draws of :func:`run_batched_hmc` after warm-up, with per-draw statistics.

    Attributes:
        z: draws in the target's unconstrained space, shape ``(K, num_samples, k)``, on the
            target's device.
        stats: ``{name: (K, num_samples)}``: ``"lp"`` (log density of the draw),
            ``"diverging"`` (bool: energy error above 1000 or not finite; such proposals are
            rejected), ``"energy"`` (Hamiltonian of the draw and its momentum), ``"step_size"``,
            ``"n_steps"`` (leapfrog steps) and ``"acceptance_rate"`` (the Metropolis
            acceptance probability of the proposal).
        n_grad_evals: gradient evaluations summed over chains, warm-up and step-size searches
            included.
        seconds: wall time of the whole run.
    """

    z: torch.Tensor
    stats: dict[str, np.ndarray]
    n_grad_evals: int
    seconds: float

    def __repr__(self) -> str:
        K, S, k = self.z.shape
        return (
            f"BatchedHMCResult({K} chains × {S} draws × {k} parameters, {self.n_grad_evals} gradient evaluations, "
            f"{self.seconds:.3g} s, {int(self.stats['diverging'].sum())} divergences)"
        )


def run_batched_hmc(
    target: Target,
    init_z: torch.Tensor,
    *,
    num_samples: int,
    warmup_steps: int,
    config: BatchedHMCConfig | None = None,
    seed: int,
    progress: bool = False,
) -> BatchedHMCResult:
    """Sample ``target`` with ``K`` jittered-HMC chains moved together, adapted by ChEES.

    Random numbers (momenta, accept draws) come from a generator of its own on
    ``target.device`` seeded with ``seed``; torch's global streams are neither used nor changed.
    With ``warmup_steps < 50`` the mass matrix stays the identity; with ``warmup_steps = 0``
    the chains take one leapfrog step of the searched step size per iteration.

    Arguments:
        target: the posterior on ``z ∈ R^k``.
        init_z: starting points, shape ``(K, k)`` with ``K ≥ 2`` (the criterion centres on
            the chains' mean; a few dozen chains adapt best), each of finite log density.
        num_samples: draws kept per chain.
        warmup_steps: adaptation iterations per chain, discarded.
        config: sampler settings; :class:`BatchedHMCConfig` defaults when ``None``.
        seed: seed of the sampler's random stream.
        progress: show a ``tqdm`` bar.

    Returns:
        :class:`BatchedHMCResult` with ``z`` of shape ``(K, num_samples, k)``.

    Example:
        >>> import torch.distributions as d
        >>> t = Target({"a": d.Normal(0.0, 1.0)}, lambda v: -0.5 * (v["a"] - 1.0) ** 2)
        >>> r = run_batched_hmc(t, torch.zeros(4, 1, dtype=torch.float64), num_samples=10, warmup_steps=20, seed=0)
        >>> tuple(r.z.shape), r.stats["lp"].shape
        ((4, 10, 1), (4, 10))
    """
    config = BatchedHMCConfig() if config is None else config
    for name, value, low in (("num_samples", num_samples, 1), ("warmup_steps", warmup_steps, 0)):
        if not _is_int(value) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not isinstance(init_z, torch.Tensor) or init_z.ndim != 2 or init_z.shape[1] != target.dim:
        shape = tuple(init_z.shape) if isinstance(init_z, torch.Tensor) else type(init_z).__name__
        raise ValueError(f"init_z must be a tensor of shape (K, {target.dim}) (chains, parameters), got {shape}")
    K, k = init_z.shape
    if K < 2:
        raise ValueError(f"init_z holds {K} chains; ChEES needs at least 2 (its criterion centres on their mean)")
    start = time.perf_counter()
    z = init_z.detach().to(dtype=target.dtype, device=target.device)  # K k
    logp, _, grad = target.value_and_grad(z)  # K, K, K k
    if bad := int((~torch.isfinite(logp)).sum()):
        raise ValueError(f"{bad} of {K} chains start where the log density is not finite")
    gen = torch.Generator(device=target.device).manual_seed(seed)

    def momenta() -> torch.Tensor:
        return torch.randn(K, k, generator=gen, dtype=target.dtype, device=target.device)  # K k

    metric = _Metric(torch.ones(k, dtype=target.dtype, device=target.device))
    eps, evals = _find_step_size(target, z, logp, grad, metric, config.init_step_size, momenta)
    n_grad_evals = K + evals
    adapt = _Adaptation(eps, eps, config)
    first, window_ends = _mass_windows(warmup_steps)
    moments = _Moments()
    final_eps, final_T = eps, eps  # what warm-up = 0 samples with
    draws = torch.empty(num_samples, K, k, dtype=target.dtype, device=target.device)  # S K k
    record = {name: torch.empty(num_samples, K, dtype=target.dtype, device=target.device) for name in _STATS}

    bar = progress_bar(range(warmup_steps + num_samples), progress=progress, desc="batched HMC")
    for it in bar:
        warm = it < warmup_steps
        jitter = _van_der_corput(it + 1)
        eps, T = (adapt.step_size, adapt.trajectory_length) if warm else (final_eps, final_T)
        n = min(config.max_leapfrog_steps, max(1, math.ceil(jitter * T / eps)))
        p0 = momenta()  # K k
        z1, p1, logp1, grad1 = _leapfrog(target, z, p0, grad, eps, n, metric)
        h0, h1 = _hamiltonian(logp, p0), _hamiltonian(logp1, p1)  # K, K
        accept_prob, diverging = _accept_prob(h1 - h0)  # K, K
        accepted = torch.rand(K, generator=gen, dtype=target.dtype, device=target.device) < accept_prob  # K
        n_grad_evals += K * n
        if warm:
            mean_accept, chees = _chees_gradient(
                metric.whiten(z), metric.whiten(z1), p1, accept_prob, n * eps, _CRITERION_POWER[config.criterion]
            )
            adapt.update(mean_accept, chees)
        z = torch.where(accepted[:, None], z1, z)  # K k
        logp = torch.where(accepted, logp1, logp)  # K
        grad = torch.where(accepted[:, None], grad1, grad)  # K k
        if warm:
            if window_ends and first <= it < window_ends[-1]:
                moments.add(z)
            if (it + 1) in window_ends:
                metric = _Metric(moments.cholesky(config.dense_mass))
                moments = _Moments()
                new_eps, evals = _find_step_size(target, z, logp, grad, metric, adapt.step_size, momenta)
                n_grad_evals += evals
                adapt = adapt.restart(new_eps)
            if it + 1 == warmup_steps:
                final_eps, final_T = adapt.final()
        else:
            s = it - warmup_steps
            draws[s] = z
            for name, value in (
                ("lp", logp), ("diverging", diverging), ("energy", torch.where(accepted, h1, h0)),
                ("step_size", eps), ("n_steps", n), ("acceptance_rate", accept_prob),
            ):  # fmt: skip
                record[name][s] = value
        if progress:
            bar.set_postfix(step_size=f"{eps:.3g}", n_steps=n, refresh=False)

    stats = {name: v.T.cpu().numpy() for name, v in record.items()}
    stats["diverging"] = stats["diverging"].astype(bool)
    stats["n_steps"] = stats["n_steps"].astype(np.int64)
    result = BatchedHMCResult(draws.transpose(0, 1).contiguous(), stats, n_grad_evals, time.perf_counter() - start)
    logger.info(
        "%d chains: %d+%d iterations in %.1f s, %d divergences, step size %.3g, trajectory %.3g, acceptance %.2f",
        K, warmup_steps, num_samples, result.seconds, int(stats["diverging"].sum()), final_eps, final_T,
        float(stats["acceptance_rate"].mean()),
    )  # fmt: skip
    return result


class _Metric:
    """``M⁻¹ = L Lᵀ``: ``z = L y`` maps whitened coordinates ``y``, where the mass matrix is ``I``, onto ``z``.

    ``L`` is a vector of scales (diagonal mass) or a lower-triangular matrix (dense mass).
    """

    def __init__(self, L: torch.Tensor) -> None:
        self.L = L

    def push(self, p: torch.Tensor) -> torch.Tensor:
        """``L p`` of rows ``p (K, k)``: the velocity in ``z`` of whitened momenta."""
        return p * self.L if self.L.ndim == 1 else p @ self.L.T

    def pull(self, g: torch.Tensor) -> torch.Tensor:
        """``Lᵀ g`` of rows ``g (K, k)``: a gradient in ``z`` as a gradient in ``y``."""
        return g * self.L if self.L.ndim == 1 else g @ self.L

    def whiten(self, z: torch.Tensor) -> torch.Tensor:
        """``L⁻¹ z`` of rows ``z (K, k)``."""
        if self.L.ndim == 1:
            return z / self.L
        return torch.linalg.solve_triangular(self.L.T, z, upper=True, left=False)


class _Moments:
    """The (co)variance of the chains' states over a window, all chains pooled, shrunk as Stan does."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, z: torch.Tensor) -> None:
        if self.n == 0:
            # centring on the first states keeps the sums of squares free of cancellation
            self.shift, self.s1, self.s2 = z.mean(0), torch.zeros_like(z[0]), torch.zeros_like(z.T @ z)  # k, k, k k
        d = z - self.shift  # K k
        self.n += len(z)
        self.s1 += d.sum(0)
        self.s2 += d.T @ d

    def cholesky(self, dense: bool) -> torch.Tensor:
        """``L`` of the shrunk covariance: lower-triangular ``(k, k)`` if ``dense``, else scales ``(k,)``."""
        n, mean = self.n, self.s1 / self.n
        cov = (self.s2 - n * torch.outer(mean, mean)) / (n - 1)  # k k
        eye = torch.eye(len(mean), dtype=cov.dtype, device=cov.device)
        cov = n / (n + 5.0) * cov + 1e-3 * 5.0 / (n + 5.0) * eye
        return torch.linalg.cholesky(cov) if dense else cov.diagonal().sqrt()


class _Adaptation:
    """Step size by dual averaging, trajectory length by Adam ascent of ChEES in ``log T``, and their iterate averages.

    Dual averaging uses Hoffman & Gelman's constants; Adam has no momentum, ``β₂ = 0.95``,
    learning rate 0.025 and log-updates clipped to ±0.35 (the ChEES paper's settings), and
    ``log T`` is averaged with weights ``t^-½``. ``T`` is kept between the starting step size
    (from the step-size search) and ``max_leapfrog_steps`` current steps. The lower bound is the
    searched step, not the current one: dual averaging's first steps try up to ~10× the searched
    size, and a ``T`` pushed up to them would take most of a short warm-up to come down again.
    """

    def __init__(self, step_size: float, trajectory_length: float, config: BatchedHMCConfig) -> None:
        self.config = config
        self.mu = math.log(10.0 * step_size)
        self.log_min_T = math.log(step_size)
        self.log_eps = self.log_eps_avg = math.log(step_size)
        self.log_T = self.log_T_avg = self._clip_log_length(math.log(trajectory_length), self.log_eps)
        self.h_bar = self.sq_grad = 0.0
        self.t = 0

    @property
    def step_size(self) -> float:
        return math.exp(self.log_eps)

    @property
    def trajectory_length(self) -> float:
        return math.exp(self.log_T)

    def update(self, mean_accept: float, chees_grad: float) -> None:
        self.t += 1
        t = self.t
        self.h_bar += (self.config.target_accept_prob - mean_accept - self.h_bar) / (t + 10.0)
        self.log_eps = self.mu - math.sqrt(t) / 0.05 * self.h_bar
        w = t**-0.75
        self.log_eps_avg = w * self.log_eps + (1.0 - w) * self.log_eps_avg
        self.sq_grad = 0.95 * self.sq_grad + 0.05 * chees_grad**2
        scale = math.sqrt(self.sq_grad / (1.0 - 0.95**t)) + 1e-10
        log_T = self.log_T + min(0.35, max(-0.35, 0.025 * chees_grad / scale))
        self.log_T = self._clip_log_length(log_T, self.log_eps)
        w = t**-0.5
        self.log_T_avg = w * self.log_T + (1.0 - w) * self.log_T_avg

    def restart(self, step_size: float) -> _Adaptation:
        """Fresh adaptation after a new mass matrix, from ``step_size`` and ``T = 1`` (within the new bounds).

        The mass matrix scales the target to about unit width in every direction, where a
        trajectory of length ~1 moves a chain across a good part of it.
        """
        return _Adaptation(step_size, 1.0, self.config)

    def final(self) -> tuple[float, float]:
        """The averaged step size and trajectory length that sampling uses."""
        return math.exp(self.log_eps_avg), math.exp(self._clip_log_length(self.log_T_avg, self.log_eps_avg))

    def _clip_log_length(self, log_T: float, log_eps: float) -> float:
        return min(log_eps + math.log(self.config.max_leapfrog_steps), max(self.log_min_T, log_T))


def _leapfrog(
    target: Target, z: torch.Tensor, p: torch.Tensor, grad: torch.Tensor, eps: float, n: int, metric: _Metric
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n ≥ 1`` leapfrog steps of size ``eps`` from ``z (K, k)`` with whitened momenta ``p (K, k)``.

    Returns ``(z, p, log density, gradient)`` at the end, shapes ``(K, k), (K, k), (K,), (K, k)``.
    """
    for _ in range(n):
        p = p + 0.5 * eps * metric.pull(grad)  # K k
        z = z + eps * metric.push(p)  # K k
        logp, _, grad = target.value_and_grad(z)  # K, K k
        p = p + 0.5 * eps * metric.pull(grad)
    return z, p, logp, grad


def _hamiltonian(logp: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``-log p(z) + ½‖p‖²`` of ``logp (K,)`` and whitened momenta ``p (K, k)``, shape ``(K,)``."""
    return -logp + 0.5 * p.square().sum(-1)


def _accept_prob(energy_error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Metropolis acceptance probability ``min(1, e^-ΔH)`` and the divergence flag, both ``(K,)``."""
    diverging = ~torch.isfinite(energy_error) | (energy_error > _MAX_ENERGY_ERROR)
    prob = torch.where(diverging, torch.zeros_like(energy_error), torch.exp(-energy_error).clamp(max=1.0))
    return prob, diverging


def _chees_gradient(
    y0: torch.Tensor, y1: torch.Tensor, v1: torch.Tensor, accept_prob: torch.Tensor, t: float, power: float
) -> tuple[float, float]:
    """The chains' mean acceptance probability and the criterion's gradient in ``log T``, in one host transfer.

    Per chain, ``C = ¼(‖ỹ₁‖² − ‖ỹ₀‖²)²`` with ``ỹ`` centred on the chains' mean (of the
    proposals, weighted by acceptance), ``∂C/∂t = (‖ỹ₁‖² − ‖ỹ₀‖²) ỹ₁·v₁`` with ``v₁`` the
    proposal's velocity, and the criterion ``C / t^p`` has ``∂/∂log T = (t ∂C/∂t − p C) / t^p``
    (``∂t/∂log T = t``); averaged over chains weighted by acceptance.

    Arguments:
        y0, y1: whitened states before and proposals after the trajectory, ``(K, k)``.
        v1: whitened velocities at the proposals, ``(K, k)``.
        accept_prob: ``(K,)``.
        t: the iteration's integration time ``n ε`` (the jittered trajectory length, rounded up
            to whole steps: the gradients actually spent).
        power: ``p``: 0 for ChEES, 1 for ChEES per gradient.
    """
    w = accept_prob  # K
    y1 = torch.where(torch.isfinite(y1), y1, torch.zeros_like(y1))  # a diverged proposal has weight 0
    c0 = y0 - y0.mean(0)  # K k
    c1 = y1 - (w[:, None] * y1).sum(0) / (w.sum() + 1e-20)  # K k
    change = c1.square().sum(-1) - c0.square().sum(-1)  # K
    g = (t * change * (c1 * v1).sum(-1) - power * 0.25 * change.square()) / t**power  # K
    g = torch.where((w > 1e-4) & torch.isfinite(g), g, torch.zeros_like(g))
    mean_accept, grad = torch.stack([w.mean(), (w * g).sum() / (w.sum() + 1e-20)]).tolist()
    return mean_accept, grad


def _find_step_size(
    target: Target,
    z: torch.Tensor,
    logp: torch.Tensor,
    grad: torch.Tensor,
    metric: _Metric,
    eps: float,
    momenta,
) -> tuple[float, int]:
    """Double or halve ``eps`` until the chains' mean acceptance of one leapfrog step crosses ½ (Stan's search).

    Returns the step size and the gradient evaluations spent.
    """
    direction, trials = 0, 0
    while trials < 60:
        trials += 1
        p0 = momenta()  # K k
        _, p1, logp1, _ = _leapfrog(target, z, p0, grad, eps, 1, metric)
        accept = float(_accept_prob(_hamiltonian(logp1, p1) - _hamiltonian(logp, p0))[0].mean())
        step = 1 if accept > 0.5 else -1
        if direction and step != direction:
            break
        direction = step
        eps *= 2.0**step
    return eps, trials * len(z)


def _mass_windows(warmup_steps: int) -> tuple[int, list[int]]:
    """The first warm-up iteration that feeds the mass matrix and those after which it is re-estimated.

    Windows of 1, 2, 4 and 8 parts of the span from 15 % to 90 % of warm-up (Stan's doubling
    windows): the short early ones follow the chains out of their starting region, the long
    last one sets the matrix, and the final 10 % of warm-up adapts ``ε`` and ``T`` to it.
    """
    if warmup_steps < _MIN_WARMUP_FOR_MASS:
        return 0, []
    first, last = round(0.15 * warmup_steps), round(0.9 * warmup_steps)
    return first, [first + round((last - first) * f / 15) for f in (1, 3, 7, 15)]


def _van_der_corput(i: int) -> float:
    """The ``i``-th point (``i ≥ 1``) of the base-2 van der Corput sequence: 0.5, 0.25, 0.75, 0.125, …"""
    x, f = 0.0, 0.5
    while i:
        x, i, f = x + f * (i & 1), i >> 1, f / 2
    return x


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
