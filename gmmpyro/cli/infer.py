"""``gmmpyro infer``: NUTS posterior and/or profile-likelihood scan for observed events."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .files import check_output_folder
from .parsing import parse_device, parse_prior, parse_scan

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
        help="name=uniform:lo:hi, name=normal:mean:sd or name=value (fixed); runs NUTS",
    )
    infer.add_argument("--scan", nargs="+", type=parse_scan, metavar="NAME=LO:HI:N", help="profile-likelihood grid")
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
        choices=("nuts", "batched", "smc"),
        default="nuts",
        help="posterior sampler: Pyro NUTS, batched HMC chains, or tempered SMC for several modes (default nuts)",
    )
    infer.add_argument("--chains", type=int, default=4, help="chains, or SMC runs (default 4)")
    infer.add_argument("--warmup", type=int, default=1000, help="warm-up steps per chain (default 1000)")
    infer.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    infer.add_argument("--seed", type=int, default=0, help="seed of the chains (default 0)")
    infer.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    infer.add_argument("--quiet", action="store_true", help="no progress bars")
    infer.add_argument(
        "--out", default="gmmpyro-infer", help="output folder: posterior.nc, scan.json (default gmmpyro-infer)"
    )
    infer.set_defaults(run=run_infer)
    return infer


def run_infer(args: argparse.Namespace) -> None:
    """Run ``gmmpyro infer`` from parsed arguments: write ``scan.json`` and/or ``posterior.nc``."""
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
    if args.scan:
        # the learned likelihood means nothing outside the training range: fit inside it
        bounds = dict(zip(model.params, model.theta_bounds.tolist(), strict=True))
        scan = profile.scan(
            model, x_obs, dict(args.scan), profile=args.profile, constraints=constraints or None, bounds=bounds
        )
        with open(out / "scan.json", "w") as handle:
            json.dump(scan.to_dict(), handle, default=lambda v: np.asarray(v).tolist())
        print(scan)
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
        import arviz as az

        print(az.summary(idata))
