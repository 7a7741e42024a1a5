"""``gmmpyro sample``: draw events from a trained model at a parameter point."""

from __future__ import annotations

import argparse

import torch

from .files import check_output_file
from .parsing import parse_assignment, parse_device

__all__ = ["add_sample_command", "run_sample"]


def add_sample_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro sample MODEL --theta NAME=VALUE ... -n N --out FILE`` to a CLI.

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``sample`` sub-parser; its ``run`` default is :func:`run_sample`.
    """
    sample = subparsers.add_parser("sample", help="draw events from a trained model")
    sample.add_argument("model", help="a model saved by DensityModel.save (.gmm)")
    sample.add_argument(
        "--theta", nargs="+", type=parse_assignment, required=True, metavar="NAME=VALUE", help="the parameter point"
    )
    sample.add_argument("-n", type=int, required=True, help="number of events")
    sample.add_argument("--seed", type=int, help="seed of the draw (default: fresh randomness)")
    sample.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    sample.add_argument("--out", required=True, help=".npz, .csv or .parquet file to write")
    sample.add_argument("--quiet", action="store_true", help="no message on standard output")
    sample.set_defaults(run=run_sample)
    return sample


def run_sample(args: argparse.Namespace) -> None:
    """Run ``gmmpyro sample`` from parsed arguments: draw the events and write them to ``--out``."""
    from ..datafiles import SUFFIXES, write_columns
    from ..model import DensityModel

    check_output_file(args.out, suffixes=SUFFIXES)
    model = DensityModel.load(args.model, map_location=args.device)
    values = dict(args.theta)
    unknown, missing = set(values) - set(model.params), set(model.params) - set(values)
    if unknown or missing:
        raise SystemExit(
            f"gmmpyro sample: --theta needs exactly {list(model.params)}; unknown {sorted(unknown)}, "
            f"missing {sorted(missing)}"
        )
    theta = torch.tensor([values[p] for p in model.params])
    x = model.sample(args.n, theta, seed=args.seed).cpu().numpy()
    write_columns(args.out, {o.name: x[:, i] for i, o in enumerate(model.observables)})
    if not args.quiet:
        print(f"wrote {args.n} events to {args.out}")
