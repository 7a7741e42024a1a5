"""``gmmpyro infer``: Bayesian posterior and/or profile-likelihood scan for observed events."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .files import check_output_folder
from .parsing import parse_device, parse_prior, parse_scan
from .results import markdown_table, result_rows, text_table

__all__ = ["add_infer_command", "run_infer"]


def add_infer_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro infer MODEL --events FILE [--prior ...] [--scan ...]`` to a CLI.

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``infer`` sub-parser; its ``run`` default is :func:`run_infer`.
    """
    infer = subparsers.add_parser("infer", help="posterior and/or profile scan for observed events")
    infer.add_argument("model", help="a model saved by DensityModel.save (.gmm)")
    infer.add_argument("--events", required=True, help="observed events file")
    infer.add_argument(
        "--prior",
        nargs="+",
        type=parse_prior,
        metavar="NAME=PRIOR",
        help="name=uniform:lo:hi, name=normal:mean:sd or name=value (fixed); samples the posterior",
    )
    infer.add_argument(
        "--scan",
        nargs="+",
        type=parse_scan,
        metavar="NAME=N|NAME=LO:HI:N",
        help="profile-likelihood grid of one or two parameters: N points around the MLE (window from its "
        "Hessian errors, widened until it holds the 95 %% region), or N points from LO to HI",
    )
    infer.add_argument("--profile", nargs="+", metavar="NAME", help="parameters minimised at every grid point")
    infer.add_argument(
        "--constraint",
        nargs="+",
        type=parse_prior,
        metavar="NAME=normal:MEAN:SD",
        help="Gaussian constraint terms of the profile likelihood (auxiliary measurements)",
    )
    infer.add_argument(
        "--sampler",
        choices=("smc", "nuts", "batched"),
        default="smc",
        help="posterior sampler: tempered SMC (weighs separated modes, gives the evidence), Pyro NUTS, or "
        "batched HMC chains (default smc)",
    )
    infer.add_argument("--chains", type=int, default=4, help="chains, or SMC runs (default 4)")
    infer.add_argument("--warmup", type=int, default=1000, help="warm-up steps per chain, MCMC only (default 1000)")
    infer.add_argument(
        "--draws", type=int, default=1000, help="draws per chain, or particles per SMC run (default 1000)"
    )
    infer.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    infer.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    infer.add_argument("--quiet", action="store_true", help="no progress bars")
    infer.add_argument(
        "--out",
        default="gmmpyro-infer",
        help="output folder: summary.md, a figure, posterior.nc, scan.json (default gmmpyro-infer)",
    )
    infer.set_defaults(run=run_infer)
    return infer


def run_infer(args: argparse.Namespace) -> None:
    """Run ``gmmpyro infer``: write ``scan.json``, ``posterior.nc``, ``summary.md`` and a figure; print the table.

    The figure is ``posterior_vs_profile.png`` (:func:`gmmpyro.plotting.compare`) when both a
    scan and a posterior ran, else ``profile.png`` (:func:`gmmpyro.plotting.plot_profile`)
    for a scan alone, or ``posterior.png`` (ArviZ's ``plot_posterior``) for a posterior alone.
    """
    from .. import bayes, profile
    from ..datafiles import read_columns, select_columns
    from ..model import DensityModel

    if not args.scan and not args.prior:
        raise SystemExit("gmmpyro infer: give --prior (posterior) and/or --scan (profile likelihood)")
    check_output_folder(args.out)
    model = DensityModel.load(args.model, map_location=args.device)
    names = [o.name for o in model.observables]
    columns = read_columns(args.events, names={"x": names})
    x_obs = torch.from_numpy(select_columns(columns, names, path=args.events))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    constraints = {n: d for n, d in (args.constraint or [])}
    scan = idata = None
    if args.scan:
        # the learned likelihood means nothing outside the training range: fit inside it
        bounds = dict(zip(model.params, model.theta_bounds.tolist(), strict=True))
        scan = profile.scan(
            model, x_obs, dict(args.scan), profile=args.profile, constraints=constraints or None, bounds=bounds
        )
        with open(out / "scan.json", "w") as handle:
            json.dump(scan.to_dict(), handle, default=lambda v: np.asarray(v).tolist())
    if args.prior:
        idata = bayes.sample_posterior(
            model,
            x_obs,
            dict(args.prior),
            num_samples=args.draws,
            warmup_steps=args.warmup,
            num_chains=args.chains,
            device=args.device,
            seed=args.seed,
            progress=not args.quiet,
            sampler=args.sampler,
        )
        idata.to_netcdf(str(out / "posterior.nc"))
    rows = result_rows(list(model.params), scan=scan, idata=idata)
    figure = _figure(scan, idata, out)
    (out / "summary.md").write_text(
        f"# gmmpyro infer\n\n{len(x_obs)} events from `{args.events}`, model `{args.model}`.\n\n"
        f"{markdown_table(rows)}\n\n![{figure.stem}]({figure.name})\n"
    )
    print(text_table(rows))
    written = [name for name in ("summary.md", figure.name, "scan.json", "posterior.nc") if (out / name).exists()]
    print(f"\nwritten to {out}/: {', '.join(written)}")


def _figure(scan, idata, out: Path) -> Path:
    """Draw the figure of what ran and return its path."""
    import matplotlib.pyplot as plt

    from .. import plotting

    if scan is not None and idata is not None:
        fig, path = plotting.compare(scan, idata), out / "posterior_vs_profile.png"
    elif scan is not None:
        fig, path = plotting.plot_profile(scan), out / "profile.png"
    else:
        import arviz as az
        from matplotlib import MatplotlibDeprecationWarning

        with warnings.catch_warnings():  # ArviZ 0.x calls a matplotlib API deprecated in 3.11
            warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
            axes = az.plot_posterior(idata, hdi_prob=0.95)
        fig, path = np.ravel(axes)[0].figure, out / "posterior.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
