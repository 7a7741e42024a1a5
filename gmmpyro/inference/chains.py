"""NUTS chains run one after the other in this process, each seeded, with per-draw statistics.

The sampler half of :func:`gmmpyro.bayes.sample_posterior`: it knows nothing of models or
data, only a :class:`~gmmpyro.inference.target.Target` — the posterior as a log density on
the unconstrained space ``z ∈ R^k`` — which Pyro's NUTS moves on as its ``potential_fn``
(one site ``"z"`` of shape ``(k,)``). Pyro's own route, a Pyro model traced at every
gradient, costs ~1–2 ms per gradient on one CPU thread on top of the likelihood (the
tracing, one distribution object per site, the per-site transforms); the target's prior is
a few vectorised operations (see ``docs/benchmarks.md``, "NUTS without the tracing").

Chains and random streams: each chain is a separate ``pyro.infer.MCMC`` run (its own
adaptation) in this process; nothing uses multiprocessing, so CPU and CUDA behave alike
(Pyro's multi-process chains need ``spawn`` with CUDA and hang on some platforms, pyro
#2315). Before each chain, torch's CPU generator (and CUDA's, when in use), Python's
``random`` and NumPy's legacy global generator are seeded with the chain's seed; afterwards
all of them are restored, so running chains does not change the caller's random streams.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pyro.infer import MCMC, NUTS

from .._progress import progress_bar
from .batched_runs import resampled_starts
from .target import Target

__all__ = ["ChainResult", "NUTSConfig", "eval_mode", "run_chains"]

logger = logging.getLogger(__name__)

STATS = ("lp", "diverging", "energy", "step_size", "n_steps", "acceptance_rate")
_UNIFORM_TRIES = 100  # starting points tried by init_strategy="uniform", as Pyro's initialize_model


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of the NUTS kernel (Hoffman & Gelman 2014, arXiv:1111.4246).

    Arguments:
        target_accept_prob: target of the step-size adaptation.
        max_tree_depth: most doublings per trajectory (at most ``2**max_tree_depth - 1`` steps).
        full_mass: adapt a dense mass matrix: with few parameters it costs nothing and helps
            when they are correlated, as nuisance parameters often are (the toy's ``nu`` and
            ``cy``: ~1.5× the bulk ESS per gradient of a diagonal one).
        init_strategy: ``"resample"`` starts each chain at one of ``n_init`` prior draws,
            picked with probability ∝ its likelihood (sampling-importance-resampling in one
            batched likelihood pass), so chains start in the bulk of the posterior and not in
            a local mode of negligible mass such as the toy's sign-flipped ``c``
            (a ``ValueError`` if none of them has a finite likelihood; priors that cannot be
            sampled start as ``"uniform"``); ``"uniform"`` draws starting points in
            ``(-2, 2)`` of the unconstrained space (Stan's choice) until one has a finite log
            density (at most 100 tries, as Pyro's); ``"median"`` starts at the median of 15
            prior draws (Pyro's ``init_to_median``), or as ``"uniform"`` where that is not finite.
        n_init: prior draws per chain for ``"resample"``.

    Example:
        >>> NUTSConfig(full_mass=False).max_tree_depth
        10
    """

    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    full_mass: bool = True
    init_strategy: Literal["resample", "uniform", "median"] = "resample"
    n_init: int = 1000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the bad setting."""
        if not 0.0 < self.target_accept_prob < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {self.target_accept_prob!r}")
        if int(self.max_tree_depth) != self.max_tree_depth or self.max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be a positive integer, got {self.max_tree_depth!r}")
        if self.init_strategy not in ("resample", "uniform", "median"):
            raise ValueError(f"init_strategy must be 'resample', 'uniform' or 'median', got {self.init_strategy!r}")
        if int(self.n_init) != self.n_init or self.n_init < 1:
            raise ValueError(f"n_init must be a positive integer, got {self.n_init!r}")


@dataclass
class ChainResult:
    """One chain: ``draws`` and ``stats`` (post warm-up, one entry per draw), its cost."""

    draws: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    seconds: float
    grad_evals: int  # leapfrog steps, warm-up included


class _RecordingNUTS(NUTS):
    """NUTS that keeps the per-iteration statistics Pyro computes but returns only as running averages.

    Pyro's public interface gives the divergent draws (``kernel.diagnostics()``, read by an
    ``MCMC`` ``hook_fn`` in :func:`run_chains`) and the step size; the leapfrog steps, the mean acceptance
    probability, the energy and ``lp`` of each draw exist only inside ``NUTS.sample``. They
    are read from its private ``_build_basetree`` (one call per leapfrog step) and
    ``_potential_energy_last`` (tested with Pyro 1.9): ``pyproject.toml`` bounds ``pyro-ppl``
    below the next, untested release.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: dict[str, list] = {k: [] for k in STATS if k != "diverging"}

    def _build_basetree(self, z, r, z_grads, log_slice, direction, energy_current):
        tree = super()._build_basetree(z, r, z_grads, log_slice, direction, energy_current)
        self._it_steps += 1
        self._it_accept += float(tree.sum_accept_probs)
        self._it_energy = float(energy_current)
        return tree

    def sample(self, params):
        step_size = float(self.step_size)
        self._it_steps, self._it_accept, self._it_energy = 0, 0.0, math.nan
        z = super().sample(params)
        rec = self.records
        rec["lp"].append(-float(self._potential_energy_last))
        rec["energy"].append(self._it_energy)
        rec["step_size"].append(step_size)
        rec["n_steps"].append(self._it_steps)
        rec["acceptance_rate"].append(self._it_accept / self._it_steps if self._it_steps else math.nan)
        return z


def run_chains(
    target: Target,
    chain_seeds: list[int],
    *,
    num_samples: int,
    warmup_steps: int,
    config: NUTSConfig,
    progress: bool,
    model=None,
    cuda: bool = False,
) -> list[ChainResult]:
    """Run one NUTS chain per seed, in sequence, on ``target``'s unconstrained space.

    Arguments:
        target: the posterior; its ``dtype`` and ``device`` are those of the chains' state.
        chain_seeds: one seed per chain.
        model: put in ``eval()`` mode while sampling (its ``nn.Module`` parts), then restored.
        cuda: also seed (and restore) the CUDA generators.

    Returns:
        One :class:`ChainResult` per chain; draws in the constrained space, by name.

    Example:
        >>> import pyro.distributions as dist
        >>> t = Target({"a": dist.Normal(0.0, 1.0)}, lambda v: -0.5 * (v["a"] - 1.0) ** 2)
        >>> (chain,) = run_chains(t, [0], num_samples=50, warmup_steps=50, config=NUTSConfig(), progress=False)
        >>> chain.draws["a"].shape, chain.stats["n_steps"].shape
        ((50,), (50,))
    """

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return -target.log_density(params["z"])

    results = []
    with eval_mode(model), torch.enable_grad(), _restored_rng(cuda):
        for c, seed in enumerate(chain_seeds):
            _seed_everything(seed, cuda)
            kernel = _RecordingNUTS(
                potential_fn=potential,
                target_accept_prob=config.target_accept_prob,
                max_tree_depth=config.max_tree_depth,
                full_mass=config.full_mass,
            )
            divergent = np.zeros(num_samples, dtype=bool)
            label = f"chain {c + 1}/{len(chain_seeds)}"
            bar = progress_bar(total=warmup_steps + num_samples, progress=progress, desc=f"{label} warm-up", unit="it")

            def after_iteration(kernel, params, stage, i, divergent=divergent, bar=bar, label=label):
                sampling = stage.lower().startswith("sample")
                if sampling:  # Pyro lists the divergent draws so far
                    divergent[i] = i in kernel.diagnostics()["divergences"][-1:]
                    if i == 0:
                        bar.set_description(f"{label} sampling")
                records = kernel.records
                bar.set_postfix(
                    step_size=f"{records['step_size'][-1]:.3g}", leapfrogs=records["n_steps"][-1], refresh=False
                )
                bar.update()

            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params={"z": _start(target, config, seed)},
                disable_progbar=True,
                hook_fn=after_iteration,
            )
            start = time.perf_counter()
            with bar:
                mcmc.run()
            seconds = time.perf_counter() - start
            with torch.no_grad():
                values = target.constrain(mcmc.get_samples()["z"])  # {name: (num_samples,)}
            draws = {k: v.detach().cpu().double().numpy() for k, v in values.items()}
            stats = {k: divergent if k == "diverging" else np.asarray(kernel.records[k][-num_samples:]) for k in STATS}
            results.append(ChainResult(draws, stats, seconds, int(sum(kernel.records["n_steps"]))))
            logger.info(
                "chain %d/%d: %d+%d iterations in %.1f s, %d divergences, step size %.3g, acceptance %.2f",
                c + 1, len(chain_seeds), warmup_steps, num_samples, seconds, int(stats["diverging"].sum()),
                stats["step_size"][-1], float(np.nanmean(stats["acceptance_rate"])),
            )  # fmt: skip
    return results


def _start(target: Target, config: NUTSConfig, seed: int) -> torch.Tensor:
    """A chain's starting point ``z (k,)`` by ``config.init_strategy``; draws from the seeded global streams.

    Pyro's NUTS with a ``potential_fn`` takes its start as given, so a start must have a finite
    log density: ``"median"`` and ``"uniform"`` check it, ``"resample"`` picks finite ones.

    Raises:
        ValueError: no starting point with a finite log density was found.
    """
    if config.init_strategy == "resample":
        try:
            # its own seed, derived from the chain's: NUTS' momenta come from torch's global stream seeded with `seed`
            start_seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] % 2**63)
            return resampled_starts(target, 1, config.n_init, start_seed)[0]
        except NotImplementedError:  # a prior that cannot be sampled, e.g. an improper one
            logger.info("a prior cannot be sampled; the chain starts uniformly in (-2, 2)")
    elif config.init_strategy == "median":
        try:
            medians = {name: prior.sample((15,)).median(0).values for name, prior in target.priors.items()}
            z = target.unconstrain(medians)
        except NotImplementedError:
            logger.info("a prior cannot be sampled; the chain starts uniformly in (-2, 2)")
        else:
            if _finite(target, z):
                return z
            logger.info("the log density at the prior medians is not finite; the chain starts uniformly in (-2, 2)")
    for _ in range(_UNIFORM_TRIES):
        z = torch.rand(target.dim, dtype=target.dtype, device=target.device) * 4.0 - 2.0
        if _finite(target, z):
            return z
    raise ValueError(
        f"none of {_UNIFORM_TRIES} starting points drawn uniformly in (-2, 2) of the unconstrained space has a finite "
        "log density; use NUTSConfig(init_strategy='resample') or priors that cover the data"
    )


def _finite(target: Target, z: torch.Tensor) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(target.log_density(z)))


def _modules_of(model) -> list[torch.nn.Module]:
    """The model itself if it is an ``nn.Module``, else the ``nn.Module`` attributes it holds."""
    if isinstance(model, torch.nn.Module):
        return [model]
    return [v for v in vars(model).values() if isinstance(v, torch.nn.Module)] if hasattr(model, "__dict__") else []


@contextlib.contextmanager
def eval_mode(model):
    """Within this block ``model``'s ``nn.Module`` parts are in ``eval()`` mode; restored afterwards."""
    mods = _modules_of(model) if model is not None else []
    was = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        yield
    finally:
        for m, t in zip(mods, was, strict=True):
            m.train(t)


@contextlib.contextmanager
def _restored_rng(cuda: bool):
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _seed_everything(seed: int, cuda: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed_all(seed)
