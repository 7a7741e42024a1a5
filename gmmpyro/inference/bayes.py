r"""Bayesian posteriors of a conditional density's parameters, as ArviZ data.

:func:`sample_posterior` is the one-call route: priors by parameter name, a number fixes a
parameter, a sampler (tempered SMC by default, Pyro's NUTS, or batched HMC chains), and an
ArviZ object with ``posterior``, ``sample_stats``, ``log_likelihood`` (per event) and
``observed_data``.

Your own Pyro model works just as well: :class:`~gmmpyro.distribution.GMMDistribution` (or
``model.distribution(theta)`` of a trained :class:`gmmpyro.DensityModel`) is an ordinary
Pyro distribution over one event, so i.i.d. events go in a ``pyro.plate``:

    >>> import pyro, pyro.distributions as dist
    >>> from pyro.infer import MCMC, NUTS
    >>> from gmmpyro.distribution import GMMDistribution
    >>> from gmmpyro.toy import ToyModel
    >>> toy = ToyModel()
    >>> prepared = toy.prepare(toy.sample(50, [0.8, -0.8], seed=1))  # θ-independent work, once
    >>> def pyro_model(prepared):
    ...     cx = pyro.sample("cx", dist.Uniform(-1.5, 1.5))
    ...     cy = pyro.sample("cy", dist.Uniform(-1.5, 1.5))
    ...     theta = torch.stack([cx, cy], -1)  # k, in the order of toy.params
    ...     with pyro.plate("events", prepared.n_events):
    ...         pyro.sample("x", GMMDistribution(toy, theta, prepared=prepared), obs=prepared.events)
    >>> pyro.set_rng_seed(0)
    >>> mcmc = MCMC(NUTS(pyro_model), num_samples=20, warmup_steps=20, disable_progbar=True)
    >>> mcmc.run(prepared)
    >>> mcmc.get_samples()["cx"].shape
    torch.Size([20])

Add a Poisson rate term with ``pyro.factor("n", PoissonTerm(rate, n)(theta))`` and nuisance
parameters as further ``pyro.sample`` sites. ``prepared`` is the fast path: the work on the
events that does not depend on ``θ`` is done once, not at every gradient (see
:mod:`gmmpyro.prepared`); ``GMMDistribution(toy, theta)`` with ``obs=x_obs`` gives the same
numbers, doing all the work at every call. With the toy's sign-symmetric ``|c|`` terms, Pyro's default
starting points can leave a chain in a local mode of negligible mass; start chains with
``init_strategy=init_to_value(...)`` near the bulk (:func:`sample_posterior` starts its chains at
likelihood-weighted prior draws).

With ``sampler="nuts"`` the chains run one after the other in this process, each its own
``pyro.infer.MCMC`` run with its own seed, so CPU and CUDA behave alike; the caller's random
streams are left as they were (see :mod:`gmmpyro.inference.chains`). Pyro's NUTS moves on the
posterior's unconstrained space through a ``potential_fn``
(:class:`~gmmpyro.inference.target.Target`, the same log density the other samplers use): each
prior's support is mapped to the real line with ``torch.distributions.biject_to``, as Pyro
would do for a model, but without tracing a Pyro model at every gradient, which cost more than
the likelihood itself for a θ-cheap network on one CPU thread. The chain's ``k`` numbers are
float64, on the priors' device (usually the CPU) whatever the model's. The seeds of the chains
(or SMC runs) come from ``numpy.random.SeedSequence(seed)`` (fresh entropy when ``seed`` is
``None``; the seed used is stored in the result's attributes, pass it back to reproduce a run).
The model is put in ``eval()`` mode while sampling (and restored), and sampling runs with
gradients enabled even when called under ``torch.no_grad``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import numpy as np
import pyro
import torch

from ..exceptions import ConvergenceWarning, results_checked_by_caller, warn
from .batched_runs import SamplerOutput, batched_output, smc_output
from .chains import NUTSConfig, eval_mode, run_chains
from .chees import BatchedHMCConfig
from .from_mcmc import from_mcmc
from .likelihood import Likelihood
from .posterior_data import to_arviz
from .smc import SMCConfig, distinct_lineages
from .target import Target

__all__ = ["BatchedHMCConfig", "NUTSConfig", "SMCConfig", "from_mcmc", "sample_posterior"]

logger = logging.getLogger(__name__)

_RHAT_MAX = 1.01  # Vehtari et al. (2021)
_EVIDENCE_ALARM = 1e-3  # false-alarm probability of the SMC runs' log-evidence agreement test
_CONFIGS = {"nuts": NUTSConfig, "batched": BatchedHMCConfig, "smc": SMCConfig}


def _checked_config(
    sampler: str, config: NUTSConfig | BatchedHMCConfig | SMCConfig | None
) -> NUTSConfig | BatchedHMCConfig | SMCConfig:
    """The settings of ``sampler``: ``config`` if it is of the sampler's kind, its defaults for ``None``.

    Raises:
        ValueError: an unknown sampler.
        TypeError: settings of another sampler.
    """
    if sampler not in _CONFIGS:
        raise ValueError(f"sampler must be one of {sorted(_CONFIGS)}, got {sampler!r}")
    if config is None:
        return _CONFIGS[sampler]()
    if not isinstance(config, _CONFIGS[sampler]):
        raise TypeError(
            f"config of sampler {sampler!r} must be a {_CONFIGS[sampler].__name__}, got {type(config).__name__}"
        )
    return config


def sample_posterior(
    model,
    x_obs: torch.Tensor,
    priors: Mapping[str, torch.distributions.Distribution | float],
    *,
    num_samples: int = 1000,
    warmup_steps: int = 1000,
    num_chains: int = 4,
    device: torch.device | str | None = None,
    weights: torch.Tensor | None = None,
    extra_terms: Iterable[Callable[[torch.Tensor], torch.Tensor]] | None = None,
    seed: int | None = None,
    progress: bool = True,
    config: NUTSConfig | BatchedHMCConfig | SMCConfig | None = None,
    log_likelihood: bool = True,
    sampler: Literal["smc", "nuts", "batched"] | None = None,
):
    r"""Sample ``p(θ | x_obs) ∝ Π_i p(x_i | θ)^{w_i} · Π_j π_j(θ_j) · Π_t e^{t(θ)}``.

    Three samplers (see "Which sampler?" in the docs):

    * ``"smc"`` (the default): ``num_chains`` independent runs of likelihood-tempered
      sequential Monte Carlo (:func:`~gmmpyro.inference.smc.run_smc`), each a "chain" of
      ``num_samples`` equally weighted particles (``config.n_particles`` if set;
      ``warmup_steps`` does not apply): separated modes get their correct weights, and the
      log evidence comes with them;
    * ``"nuts"``: Pyro's NUTS, chains one after the other;
    * ``"batched"``: ``num_chains`` HMC chains with ChEES adaptation advanced together, one
      likelihood pass per leapfrog step for all of them
      (:func:`~gmmpyro.inference.chees.run_batched_hmc`); a few dozen chains adapt best.

    The result has the groups

    * ``posterior``: one variable per sampled parameter, ``(chain, draw)``, constrained
      space; attributes ``sampler``, ``seed``, ``chain_seeds``, ``sampling_time`` (s, per
      chain; one number for ``"batched"``), ``n_grad_evals`` (warm-up included; for
      ``"smc"`` ``n_likelihood_evals``), ``num_warmup``, ``fixed_params``; for ``"smc"``
      also ``log_evidence`` and ``log_evidence_se`` (per run: ``log ∫ prior · L``, the
      likelihood with its normalisation, priors normalised) and ``n_tempering_steps``;
    * ``sample_stats``: ``lp`` (log density in the unconstrained space, Jacobians
      included, as Stan's ``lp__``); for the HMC samplers ``diverging``, ``energy``,
      ``step_size``, ``n_steps``, ``acceptance_rate`` (and NUTS' ``tree_depth``); for
      ``"smc"`` ``lineage``, the prior draw each particle descends from;
    * ``log_likelihood``: ``x``, ``(chain, draw, event)``, unweighted ``log p(x_i | θ)``;
    * ``observed_data``: ``x``, ``(event, observable)``;
    * ``constant_data``: the fixed parameters (scalars; 1-element arrays with ArviZ 0.x),
      and ``weights`` if given.

    Arguments:
        model: a :class:`~gmmpyro.protocols.ConditionalDensity` (trained model or exact toy).
        x_obs: observed events, shape ``(N, d)``; checked against the observables' domains.
        priors: one entry per model parameter: a univariate torch/Pyro distribution (its
            prior; for a nuisance parameter ``Normal(0, 1)`` makes it a constrained nuisance),
            or a number, which fixes the parameter. A ``ValueError`` lists unknown or missing names.
        num_samples, warmup_steps: draws kept and warm-up (adaptation) iterations per chain
            (SMC: particles per run; no warm-up).
        num_chains: chains (``"nuts"``: one after the other, see the module docstring;
            ``"batched"``: at least 2, together) or SMC runs.
        device: run the likelihood there; a model elsewhere is copied with ``model.to(device)``
            (the caller's model is left where it is). A NUTS chain's state (``k`` numbers,
            float64) stays where the priors' tensors are (usually the CPU); the batched
            chains and SMC particles live on the model's device.
        weights: positive per-event weights, shape ``(N,)``; event ``i`` contributes
            ``w_i log p(x_i | θ)``.
        extra_terms: callables ``term(theta (*batch, k)) -> (*batch)`` added to the log
            posterior, e.g. :class:`~gmmpyro.inference.terms.PoissonTerm`.
        seed: seed of every random stream; ``None`` draws one (stored in the attributes).
        progress: show progress bars; diagnostics go to :mod:`logging` either way.
        config: the sampler's settings: :class:`NUTSConfig`, :class:`BatchedHMCConfig` or
            :class:`SMCConfig` (default: the sampler's defaults).
        log_likelihood: store the per-event log-likelihood group (``chain × draw × N`` numbers).
        sampler: ``"smc"``, ``"nuts"`` or ``"batched"``; ``None``: the one ``config`` is
            for (``config=NUTSConfig(...)`` alone runs NUTS), else ``"smc"``.

    Returns:
        ``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x), groups as above.

    Raises:
        ConvergenceWarning: (a warning) on divergent transitions after warm-up, or on
            rank-normalised R̂ > 1.01 with several chains.
        OutOfRangeWarning: (a warning, once) if fixed values or posterior draws lie outside ``model.theta_bounds``,
            where the learned model extrapolates (narrow the priors to the trained range).

    Example:
        >>> import pyro.distributions as dist
        >>> from gmmpyro.toy import ToyModel
        >>> toy = ToyModel(x3_shift=0.3)
        >>> x_obs = toy.sample(100, [0.8, -0.8, 0.0], seed=1)
        >>> priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Uniform(-1.5, 1.5), "nu": 0.0}
        >>> idata = sample_posterior(toy, x_obs, priors, num_samples=100, warmup_steps=100,
        ...                          num_chains=1, seed=0, progress=False)  # a quick look: 1 chain
        >>> idata["posterior"]["cx"].shape, idata["log_likelihood"]["x"].shape
        ((1, 100), (1, 100, 100))
        >>> idata["constant_data"]["nu"].values.item()  # fixed parameters are constant data
        0.0
    """
    if sampler is None:
        sampler = next((name for name, kind in _CONFIGS.items() if isinstance(config, kind)), "smc")
    config = _checked_config(sampler, config)
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("warmup_steps", warmup_steps, 0),
        ("num_chains", num_chains, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if sampler == "smc" and config.n_particles is None:
        if num_samples < 2:
            raise ValueError(f"sampler='smc' needs num_samples >= 2 particles per run, got {num_samples}")
        config = dataclasses.replace(config, n_particles=num_samples)
    if sampler == "batched" and num_chains < 2:
        raise ValueError(f"sampler='batched' needs num_chains >= 2 (a few dozen adapt best), got {num_chains}")
    if device is not None:
        model = _on_device(model, torch.device(device))
    params = tuple(model.params)
    sampled, fixed = _split_priors(params, priors)

    lik = Likelihood(model, x_obs, weights=weights, extra_terms=extra_terms)  # checks x_obs, weights, terms
    if lik.weights is not None and not bool((lik.weights > 0).all()):
        raise ValueError("weights must be positive (drop events of weight 0)")
    if fixed:
        at_fixed = lik.theta_from({**fixed, **dict.fromkeys(sampled, 0.0)})  # the sampled ones are not checked
        lik.check_range(at_fixed, what="fixed parameters", names=list(fixed))
    if seed is None:  # fresh entropy, cut to 63 bits so that it fits the attributes (netCDF int64)
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    seq = np.random.SeedSequence(seed)
    chain_seeds = [int(c.generate_state(1, np.uint64)[0] % 2**63) for c in seq.spawn(num_chains)]
    with results_checked_by_caller():  # trajectories may leave the trained range: the draws are checked below
        if sampler == "nuts":  # one point at a time: the chain's k numbers in float64, on the priors' device
            target = _posterior_target(lik, sampled, fixed, dtype=torch.float64, device=_device_of(sampled))
            output = _nuts_output(target, chain_seeds, model=model, num_samples=num_samples,
                                  warmup_steps=warmup_steps, config=config, progress=progress)  # fmt: skip
        else:
            target = _posterior_target(lik, sampled, fixed, dtype=lik.dtype, device=lik.device)
            with eval_mode(model):
                if sampler == "batched":
                    output = batched_output(target, num_chains=num_chains, num_samples=num_samples,
                                            warmup_steps=warmup_steps, config=config, seed=chain_seeds[0],
                                            progress=progress)  # fmt: skip
                else:
                    output = smc_output(target, seeds=chain_seeds, config=config, progress=progress)
    posterior, stats = output.posterior, output.stats
    theta = lik.theta_from({**fixed, **{k: torch.as_tensor(v) for k, v in posterior.items()}})  # C D k
    lik.check_range(theta, what="posterior draws", names=sampled)
    groups = {"posterior": posterior, "sample_stats": stats, "observed_data": {"x": lik.x_obs.cpu().numpy()}}
    if log_likelihood:
        with torch.no_grad():
            groups["log_likelihood"] = {"x": lik.per_event(theta, weighted=False).cpu().numpy()}  # C D N
    constant = {name: np.asarray(v) for name, v in fixed.items()}
    if lik.weights is not None:
        constant["weights"] = lik.weights.cpu().numpy()
    if constant:
        groups["constant_data"] = constant

    _report(posterior, stats, num_chains)
    if sampler == "smc":
        _report_smc(stats["lineage"], output.attrs)
    attrs = {
        **output.attrs,
        "num_warmup": 0 if sampler == "smc" else warmup_steps,
        "seed": seed,
        "chain_seeds": chain_seeds,
        "fixed_params": ", ".join(f"{k}={v:g}" for k, v in fixed.items()),
        "model": _describe(model),
    }
    names = [o.name for o in model.observables]
    return to_arviz(
        groups,
        coords={"event": np.arange(lik.n_events), "observable": names},
        dims={"x": ["event", "observable"], "weights": ["event"], **{k: [] for k in fixed}},
        attrs={"posterior": attrs},
    )


# ------------------------------------------------------------------------------ helpers


def _report_smc(lineage: np.ndarray, attrs: dict) -> None:
    """Log each SMC run's evidence and distinct lineages; warn when the runs disagree on ``log Z``.

    Runs that each found every mode agree on ``log Z`` within their standard errors; a run
    that missed a mode, or moves that mix too slowly, show up as a disagreement: the runs'
    χ² about their weighted mean, ``Σ (log Z_r - m)² / se_r²``, beyond its ``1 - 1e-3``
    quantile with ``runs - 1`` degrees of freedom: a false-alarm rate that does not grow with
    the number of runs, set far out because the stated errors are lower bounds (runs spread
    up to ~1.8× them with the default moves).
    """
    from scipy.stats import chi2

    log_z, se = np.asarray(attrs["log_evidence"]), np.asarray(attrs["log_evidence_se"])
    for run, (value, error, ancestors) in enumerate(zip(log_z, se, lineage, strict=True)):
        logger.info("SMC run %d: log evidence %.4f ± %.4f, %.0f distinct lineages of %d particles",
                    run, value, error, distinct_lineages(ancestors), ancestors.size)  # fmt: skip
    if len(log_z) < 2:
        return
    precision = 1.0 / np.maximum(se, np.finfo(float).tiny) ** 2
    mean = (precision * log_z).sum() / precision.sum()
    if (precision * (log_z - mean) ** 2).sum() > chi2.isf(_EVIDENCE_ALARM, len(log_z) - 1):
        values = ", ".join(f"{v:.3f} ± {e:.3f}" for v, e in zip(log_z, se, strict=True))
        warn(
            f"the SMC runs disagree on the log evidence ({values}): "
            "a run may have missed a mode, or its moves mix too slowly; use more particles or "
            "SMCConfig(n_mcmc_steps=...)",
            ConvergenceWarning,
        )


def _nuts_output(
    target: Target, chain_seeds: list[int], *, model, num_samples: int, warmup_steps: int, config: NUTSConfig,
    progress: bool,
) -> SamplerOutput:  # fmt: skip
    """Pyro NUTS chains one after the other (:func:`~gmmpyro.inference.chains.run_chains`)."""
    chains = run_chains(
        target,
        chain_seeds,
        num_samples=num_samples,
        warmup_steps=warmup_steps,
        config=config,
        progress=progress,
        model=model,
        cuda=torch.device(model.device).type == "cuda" or torch.cuda.is_initialized(),
    )
    sampled = target.names
    posterior = {name: np.stack([ch.draws[name] for ch in chains]) for name in sampled}  # C D
    stats = {k: np.stack([ch.stats[k] for ch in chains]) for k in chains[0].stats}  # C D
    stats["diverging"] = stats["diverging"].astype(bool)
    stats["tree_depth"] = np.floor(np.log2(np.maximum(stats["n_steps"], 1))).astype(np.int64) + 1
    attrs = {
        "inference_library": "pyro",
        "inference_library_version": pyro.__version__,
        "sampler": "NUTS",
        "sampling_time": [ch.seconds for ch in chains],
        "n_grad_evals": [ch.grad_evals for ch in chains],
    }
    return SamplerOutput(posterior, stats, attrs)


def _describe(model) -> str:
    if isinstance(model, torch.nn.Module):  # not the whole module tree
        return f"{type(model).__name__}({model.extra_repr()})"
    return repr(model)


def _split_priors(params: tuple[str, ...], priors) -> tuple[dict, dict]:
    if not isinstance(priors, Mapping):
        raise TypeError(
            f"priors must be a dict keyed by parameter name {params}, got {type(priors).__name__}"
        )
    unknown = [k for k in priors if k not in params]
    if unknown:
        raise ValueError(f"priors: unknown parameter(s) {unknown}; the model's parameters are {list(params)}")
    missing = [p for p in params if p not in priors]
    if missing:
        raise ValueError(
            f"priors: no prior or fixed value for parameter(s) {missing}; give a distribution or a number "
            f"for each of {list(params)}"
        )
    sampled, fixed = {}, {}
    for name in params:
        prior = priors[name]
        if isinstance(prior, torch.distributions.Distribution):
            if prior.batch_shape != () or prior.event_shape != ():
                raise ValueError(
                    f"prior of {name!r} must be univariate (batch and event shape ()), got batch "
                    f"{tuple(prior.batch_shape)} event {tuple(prior.event_shape)}"
                )
            if prior.support.is_discrete:
                raise ValueError(f"prior of {name!r} is discrete; NUTS needs continuous parameters")
            sampled[name] = prior
        elif _is_number(prior):
            value = float(prior)
            if not math.isfinite(value):
                raise ValueError(f"fixed value of {name!r} must be finite, got {value}")
            fixed[name] = value
        else:
            raise TypeError(f"priors[{name!r}] must be a torch/Pyro distribution or a number, got {prior!r}")
    if not sampled:
        raise ValueError("priors: every parameter is fixed; give at least one a prior distribution")
    return sampled, fixed


def _is_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _posterior_target(
    lik: Likelihood, sampled: dict, fixed: dict, *, dtype: torch.dtype, device: torch.device | str
) -> Target:
    """The posterior of the ``sampled`` parameters (the others ``fixed``) as a :class:`Target`: priors,
    weighted events, constraint and extra terms."""
    return Target(sampled, lambda values: lik.log_likelihood(lik.theta_from({**fixed, **values})),
                  dtype=dtype, device=device)  # fmt: skip


def _device_of(priors: Mapping[str, torch.distributions.Distribution]) -> torch.device:
    """The device of the priors' parameters (the CPU for Python numbers); a ``ValueError`` if they differ."""
    devices = {
        value.device
        for prior in priors.values()
        for value in (getattr(prior, arg, None) for arg in prior.arg_constraints)
        if isinstance(value, torch.Tensor)
    }
    if len(devices) > 1:
        raise ValueError(f"the priors' parameters lie on several devices {sorted(map(str, devices))}; put them on one")
    return devices.pop() if devices else torch.device("cpu")


def _on_device(model, device: torch.device):
    here = torch.empty(0, device=model.device).device
    there = torch.empty(0, device=device).device
    if here == there:
        return model
    if not callable(getattr(model, "to", None)):
        raise TypeError(
            f"model {type(model).__name__} is on {here} and has no .to(device); create it on {there} instead"
        )
    moved = copy.deepcopy(model)
    out = moved.to(there)
    return moved if out is None else out


def _report(posterior: dict, stats: dict, num_chains: int) -> None:
    """Log each parameter's rank-normalised R̂ and bulk ESS (ArviZ, Vehtari et al. 2021), warn on bad chains."""
    import arviz as az  # az.rhat / az.ess take (chain, draw) arrays in ArviZ 0.x and 1.x alike

    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    for name, d in posterior.items():
        usable = d.shape[1] >= 4 and np.ptp(d) > 0  # constant draws: no diagnostics (ArviZ divides by 0)
        with warnings.catch_warnings():  # many short batched chains: ArviZ suspects transposed input
            warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
            r = float(az.rhat(d)) if usable and num_chains > 1 else math.nan
            ess = float(az.ess(d, method="bulk")) if usable else math.nan
        logger.info("%s: mean %.4g, sd %.3g, bulk ESS %.0f, R-hat %.4f", name, d.mean(), d.std(), ess, r)
        if r > _RHAT_MAX:
            warn(
                f"{name}: R-hat {r:.3f} > {_RHAT_MAX}; run longer chains or check for multiple modes",
                ConvergenceWarning,
            )
    if n_div:
        per_chain = stats["diverging"].sum(1).tolist()
        warn(
            f"{n_div} divergent transition(s) after warm-up (per chain: {per_chain}); the posterior may be "
            "biased (try NUTSConfig(target_accept_prob=0.95))",
            ConvergenceWarning,
        )
