"""A posterior as a batched log density on an unconstrained space: what the batched samplers move on.

Each parameter ``θ_i`` with prior ``π_i`` is written ``θ_i = T_i(z_i)`` with
``T_i = biject_to(π_i.support)`` (identity for a real support, an affine sigmoid for an
interval, ``exp`` for a positive one), so a sampler moves freely in ``z ∈ R^k``. The log
density of ``z`` is ``Σ_i [log π_i(T_i(z_i)) + log|T_i'(z_i)|] + β · log L(θ)``, with the
tempering exponent ``β`` for sequential Monte Carlo (``β = 1``: the posterior).

Every method takes a batch ``z (B, k)``: one likelihood pass scores all chains or particles
(or a single point ``z (k,)``, as Pyro's NUTS moves one chain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch.distributions import Distribution, Uniform, biject_to
from torch.nn import functional as F

__all__ = ["Target"]


class Target:
    """Prior and log-likelihood of named parameters on ``R^k``, batched.

    Arguments:
        priors: ``{name: univariate torch or Pyro distribution}``; their order is the order
            of ``z``'s columns.
        log_likelihood: ``{name: (B,)} -> (B,)``, the log-likelihood of ``B`` parameter
            points (NaN and ``+inf`` are read as ``-inf``: a point the model cannot score).
        dtype, device: of ``z``.

    Example:
        >>> import torch.distributions as d
        >>> t = Target({"a": d.Uniform(0.0, 2.0)}, lambda v: -0.5 * (v["a"] - 1.0) ** 2, dtype=torch.float64)
        >>> z = torch.zeros(3, 1, dtype=torch.float64)
        >>> t.constrain(z)["a"].tolist()
        [1.0, 1.0, 1.0]
        >>> [round(v, 4) for v in t.log_density(z).tolist()]
        [-1.3863, -1.3863, -1.3863]
    """

    def __init__(
        self,
        priors: Mapping[str, Distribution],
        log_likelihood: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if not priors:
            raise ValueError("a target needs at least one parameter with a prior")
        self.names: tuple[str, ...] = tuple(priors)
        self.priors = dict(priors)
        self.transforms = {name: biject_to(prior.support) for name, prior in self.priors.items()}
        self._log_likelihood = log_likelihood
        self.dtype, self.device = dtype, torch.device(device)
        uniform = [isinstance(p, Uniform) and p.batch_shape == () for p in self.priors.values()]
        self._other_columns = [(i, name) for i, (name, u) in enumerate(zip(self.names, uniform, strict=True)) if not u]
        self._uniform_names = [name for name, u in zip(self.names, uniform, strict=True) if u]
        self._uniform_index = torch.tensor([i for i, u in enumerate(uniform) if u], dtype=torch.long, device=device)
        # biject_to's affine sigmoid low + (high - low) σ(z) for all uniform columns at once, the width formed
        # from the support's bounds as biject_to forms it: the same values, up to the last bit of torch's
        # sigmoid, whose vectorised and scalar loops round differently (biject_to's own values depend on
        # the memory layout of z)
        supports = [self.priors[n].support for n in self._uniform_names]
        self._uniform_low = self._column([s.lower_bound for s in supports])
        self._uniform_width = self._column([s.upper_bound - s.lower_bound for s in supports])

    def _column(self, values: list) -> torch.Tensor:
        """Numbers or 0-d tensors as one ``(len(values),)`` tensor of the target's dtype and device."""
        return torch.tensor([float(v) for v in values], dtype=self.dtype, device=self.device)

    @property
    def dim(self) -> int:
        """The number of sampled parameters ``k``."""
        return len(self.names)

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: θ_i (B,)}`` of unconstrained points ``z (B, k)``."""
        values = {name: self.transforms[name](z[..., i]) for i, name in self._other_columns}
        if self._uniform_names:
            tiny, eps = torch.finfo(z.dtype).tiny, torch.finfo(z.dtype).eps
            unit = torch.sigmoid(z[..., self._uniform_index]).clamp(tiny, 1.0 - eps)  # as biject_to clips it
            values |= zip(self._uniform_names, (self._uniform_low + self._uniform_width * unit).unbind(-1), strict=True)
        return {name: values[name] for name in self.names}

    def unconstrain(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`constrain`: ``{name: (B,)} -> z (B, k)``."""
        columns = [self.transforms[n].inv(torch.as_tensor(values[n], dtype=self.dtype, device=self.device))
                   for n in self.names]  # fmt: skip
        return torch.stack(torch.broadcast_tensors(*columns), -1)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``Σ_i log π_i(θ_i) + log|T_i'(z_i)|``, the prior density of ``z (B, k)``, shape ``(B,)``.

        For a uniform prior the two terms add up to ``log σ(z_i) + log σ(-z_i)`` (the width
        cancels): one vectorised expression for all uniform priors, a few operations instead of
        a few dozen per parameter, which matters where one chain is moved one point at a time.
        """
        zu = z[..., self._uniform_index]
        total = -(F.softplus(zu) + F.softplus(-zu)).sum(-1)
        for i, name in self._other_columns:
            transform, prior, zi = self.transforms[name], self.priors[name], z[..., i]
            theta = transform(zi)
            # far out in z the transform rounds onto the support's edge, which the prior's argument check rejects
            inside = prior.support.check(theta)
            safe = torch.where(inside, theta, transform(torch.zeros_like(zi)))
            log_p = torch.where(inside, prior.log_prob(safe).to(z.dtype), torch.full_like(zi, -torch.inf))
            total = total + log_p + transform.log_abs_det_jacobian(zi, theta)
        return total

    def log_likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """``log L(θ(z))`` of ``z (B, k)``, shape ``(B,)``; NaN and ``+inf`` become ``-inf``."""
        value = self._log_likelihood(self.constrain(z)).to(dtype=z.dtype, device=z.device)
        return torch.where(torch.isfinite(value), value, torch.full_like(value, -torch.inf))

    def log_density(self, z: torch.Tensor, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """``log_prior(z) + β · log_likelihood(z)``, shape ``(B,)``."""
        return self.log_prior(z) + beta * self.log_likelihood(z)

    def value_and_grad(
        self, z: torch.Tensor, beta: float | torch.Tensor = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The tempered log density, its log-likelihood part and its gradient in ``z``.

        Returns:
            ``(log_density (B,), log_likelihood (B,), ∇_z log_density (B, k))``, detached.
            Rows whose density is not finite get a zero gradient (samplers reject them).
        """
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_lik = self.log_likelihood(z)
            value = self.log_prior(z) + beta * log_lik
            finite = torch.isfinite(value)
            (grad,) = torch.autograd.grad(torch.where(finite, value, torch.zeros_like(value)).sum(), z)
        grad = torch.where(finite[:, None] & torch.isfinite(grad), grad, torch.zeros_like(grad))
        return value.detach(), log_lik.detach(), grad

    def sample_prior(self, n: int, *, seed: int) -> torch.Tensor:
        """``n`` prior draws as ``z (n, k)``, reproducible from ``seed``.

        Distributions draw from torch's global generator: it is seeded here and restored
        afterwards (with CUDA's for a CUDA target), so the caller's random streams are left alone.
        """
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            torch.default_generator.manual_seed(seed)
            for device in cuda:
                torch.cuda.default_generators[device.index or torch.cuda.current_device()].manual_seed(seed)
            return self.unconstrain({name: prior.sample((n,)) for name, prior in self.priors.items()})
