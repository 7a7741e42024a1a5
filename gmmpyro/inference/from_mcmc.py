"""ArviZ data from a user's own ``pyro.infer.MCMC`` run: :func:`from_mcmc`.

ArviZ 1.x has no ``from_pyro``, and 0.x's breaks with several chains (sbi #542). This reads
what Pyro keeps after ``mcmc.run(*args, **kwargs)`` — the draws by chain, the divergences, the
model and its arguments — and replays the model at every draw to get the per-event
log-likelihood that ``az.loo`` and ``az.compare`` need.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_factor, site_is_subsample

from ..exceptions import warn
from .posterior_data import to_arviz

__all__ = ["from_mcmc"]


def _data_sites(trace, latent: set[str]) -> dict[str, dict]:
    """The observed sample sites that hold data: not ``pyro.deterministic``, not ``pyro.factor``.

    Raises ``ValueError`` for latent sites the run has no draws of (they would be drawn afresh
    from their priors at every replay).
    """
    data, missing = {}, []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in latent or site_is_subsample(site):  # plates record a site
            continue
        infer = site.get("infer") or {}
        if not site["is_observed"]:
            missing.append(name)
        elif not (infer.get("_deterministic") or site_is_factor(site)):
            data[name] = site
    if missing:
        raise ValueError(
            f"latent site(s) {missing} have no draws in the MCMC run (enumerated or sampled outside it); "
            "their log-likelihood cannot be replayed"
        )
    return data


def from_mcmc(mcmc, *, log_likelihood: bool = True):
    """ArviZ data (``InferenceData`` on ArviZ 0.x, ``DataTree`` on 1.x) from a finished Pyro MCMC run.

    Groups: ``posterior`` (every latent site, ``(chain, draw, *site shape)``), ``sample_stats``
    (``diverging``, from ``mcmc.diagnostics()``), ``observed_data`` (every observed site) and,
    with ``log_likelihood=True``, ``log_likelihood``: the log-density of each observed value at
    every draw, ``(chain, draw, *batch shape)`` — per event inside a ``pyro.plate``, without
    ``poutine.scale`` weights; ``pyro.factor`` and ``pyro.deterministic`` sites are left out.
    The model is replayed once per draw for it (``chain × draw`` model calls without gradients).

    Arguments:
        mcmc: a ``pyro.infer.MCMC`` whose kernel was built from a model (``NUTS(model)``),
            after ``mcmc.run(...)``; the model is replayed with the same arguments.
        log_likelihood: also compute the ``log_likelihood`` group.

    Returns:
        ``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x).

    Raises:
        ValueError: the run has no draws yet, its kernel has no model (``potential_fn``), or
            the model has latent sites without draws (e.g. enumerated discrete sites).

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> from pyro.infer import MCMC, NUTS
        >>> def model(x):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        ...     with pyro.plate("events", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> mcmc = MCMC(NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
        >>> mcmc.run(torch.randn(30))
        >>> idata = from_mcmc(mcmc)
        >>> idata["posterior"]["mu"].shape, idata["log_likelihood"]["x"].shape  # chain draw (events)
        ((1, 20), (1, 20, 30))
    """
    model = getattr(mcmc.kernel, "model", None)
    if model is None:
        raise ValueError("from_mcmc needs a kernel built from a Pyro model, e.g. NUTS(model), not a potential_fn")
    draws = mcmc.get_samples(group_by_chain=True)  # name -> C D ...
    if not draws:
        raise ValueError("the MCMC run has no draws: call mcmc.run(...) first")
    # Pyro keeps the arguments of the last run() only privately (ArviZ's from_pyro reads them too)
    args, kwargs = getattr(mcmc, "_args", ()), getattr(mcmc, "_kwargs", {})
    n_chains, n_draws = next(iter(draws.values())).shape[:2]

    diverging = np.zeros((n_chains, n_draws), dtype=bool)
    for chain, where in enumerate(mcmc.diagnostics().get("divergences", {}).values()):
        diverging[chain, list(where)] = True

    flat = {name: value.reshape(n_chains * n_draws, *value.shape[2:]) for name, value in draws.items()}
    groups = {
        "posterior": {name: value.detach().cpu().numpy() for name, value in draws.items()},
        "sample_stats": {"diverging": diverging},
    }

    def replay(i: int) -> poutine.Trace:
        conditioned = poutine.condition(model, data={name: value[i] for name, value in flat.items()})
        return poutine.trace(conditioned).get_trace(*args, **kwargs)

    with torch.no_grad():
        first = replay(0)
        observed = _data_sites(first, set(draws))
        groups["observed_data"] = {name: site["value"].detach().cpu().numpy() for name, site in observed.items()}
        if log_likelihood and not observed:
            warn("the model has no observed sample sites (only pyro.factor terms?): no log_likelihood group")
        if log_likelihood and observed:
            per_draw = {name: [] for name in observed}
            for i in range(n_chains * n_draws):
                trace = first if i == 0 else replay(i)
                for name in observed:
                    site = trace.nodes[name]
                    per_draw[name].append(site["fn"].log_prob(site["value"]).cpu())  # off the GPU: C·D·N numbers
            groups["log_likelihood"] = {
                name: torch.stack(values).reshape(n_chains, n_draws, *values[0].shape).numpy()
                for name, values in per_draw.items()
            }
    return to_arviz(groups, attrs={"posterior": {"sampler": type(mcmc.kernel).__name__}})
