"""``gmmpyro train``: train a :class:`~gmmpyro.DensityModel` on simulated events in a file."""

from __future__ import annotations

import argparse

import torch

from .parsing import load_toml, parse_assignment, parse_observable

__all__ = ["add_train_command", "run_train"]


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro train DATA --observables ... --params ... --out MODEL`` to a CLI.

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``train`` sub-parser; its ``run`` default is :func:`run_train`.
    """
    train = subparsers.add_parser(
        "train",
        help="train a model on simulated events from a file",
        description="Train a DensityModel on events in a .npz, .csv or .parquet file.",
    )
    train.add_argument("data", help="events file with one column per observable and per parameter")
    train.add_argument(
        "--observables",
        nargs="+",
        type=parse_observable,
        metavar="SPEC",
        help="name, name:lo:hi or name:lo:hi:discrete, each optionally :f=F",
    )
    train.add_argument("--params", nargs="+", metavar="NAME", help="parameter columns")
    train.add_argument("--weights", metavar="COLUMN", help="column of event weights")
    train.add_argument(
        "--reference",
        nargs="+",
        type=parse_assignment,
        metavar="NAME=VALUE",
        help="the reference point of the projection (default: the point nearest the centre; all if θ is off-grid)",
    )
    train.add_argument("--config", metavar="TOML", help="file with observables, params, [network], [training]")
    train.add_argument("--epochs", type=int, help="maximum epochs")
    train.add_argument("--batch-size", type=int, help="events per optimisation step (default 500)")
    train.add_argument("--seed", type=int, help="seed of the split, the initial weights and the batches")
    train.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    train.add_argument("--checkpoint-dir", help="save every epoch there and resume from it")
    train.add_argument("--out", required=True, help="model file to write")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)
    return train


def run_train(args: argparse.Namespace) -> None:
    """Run ``gmmpyro train`` from parsed arguments: train, save the model, print its history."""
    from ..datafiles import read_columns, select_columns
    from ..model import DensityModel
    from ..networks import NetworkConfig
    from ..observables import Observable
    from ..training import TrainingConfig

    config = load_toml(args.config) if args.config else {}
    observables = args.observables or [
        Observable.from_dict({"bounds": None, "discrete": False, "f": 0.5, **o}) for o in config.get("observables", [])
    ]
    params = args.params or config.get("params", [])
    if not observables or not params:
        raise SystemExit("gmmpyro train: give --observables and --params (or a --config file naming them)")
    network = NetworkConfig.from_dict(config.get("network", {}))
    training = {
        **config.get("training", {}),
        **{
            k: v
            for k, v in (("max_epochs", args.epochs), ("batch_size", args.batch_size), ("seed", args.seed))
            if v is not None
        },
    }
    names = {"x": [o.name for o in observables], "theta": list(params)}
    columns = read_columns(args.data, names=names)
    x = torch.from_numpy(select_columns(columns, names["x"], path=args.data))
    theta = torch.from_numpy(select_columns(columns, names["theta"], path=args.data))
    weights_column = args.weights or config.get("weights")
    weights = (
        torch.from_numpy(select_columns(columns, [weights_column], path=args.data)[:, 0]) if weights_column else None
    )
    reference = dict(args.reference or []) or config.get("reference")
    if reference:
        unknown = set(reference) - set(params)
        if unknown:
            raise SystemExit(f"gmmpyro train: --reference names unknown parameters {sorted(unknown)}")
        reference = [reference[p] for p in params]
    torch.manual_seed(training.get("seed", 0))  # the networks' initial weights
    model = DensityModel(observables, params, config=network, device=args.device)
    model.fit(
        x,
        theta,
        weights,
        reference=reference,
        config=TrainingConfig(**training),
        progress=not args.quiet,
        checkpoint_dir=args.checkpoint_dir,
    )
    model.save(args.out)
    print(f"saved {args.out}: {model.history!r}")
