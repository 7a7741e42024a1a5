"""The ``gmmpyro`` command: ``demo``, ``train``, ``sample``, ``infer`` and ``report``.

Run ``gmmpyro <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "parse_observable", "parse_prior"]


def parse_observable(spec: str):
    """``name``, ``name:lo:hi``, ``name:lo:hi:discrete``, each optionally ``...:f=0.3``.

    Example:
        >>> parse_observable("m_ll:75:105:f=0.2")
        Observable(name='m_ll', bounds=(75.0, 105.0), discrete=False, f=0.2)
    """
    from .observables import Observable

    parts = spec.split(":")
    name, rest = parts[0], parts[1:]
    f, discrete = 0.5, False
    if rest and rest[-1].startswith("f="):
        f = float(rest.pop()[2:])
    if rest and rest[-1] == "discrete":
        discrete = True
        rest.pop()
    if len(rest) not in (0, 2):
        raise argparse.ArgumentTypeError(f"observable {spec!r}: use name, name:lo:hi or name:lo:hi:discrete[:f=F]")
    bounds = (float(rest[0]), float(rest[1])) if rest else None
    try:
        return Observable(name, bounds, discrete=discrete, f=f)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_prior(spec: str) -> tuple[str, object]:
    """``name=uniform:lo:hi``, ``name=normal:mean:sd`` or ``name=value`` (fixed).

    Example:
        >>> parse_prior("cx=uniform:-1.5:1.5")[1]
        Uniform(low: -1.5, high: 1.5)
        >>> parse_prior("nu=0")
        ('nu', 0.0)
    """
    import pyro.distributions as dist

    name, _, value = spec.partition("=")
    kind, *args = value.split(":")
    try:
        if kind == "uniform" and len(args) == 2:
            return name, dist.Uniform(float(args[0]), float(args[1]))
        if kind == "normal" and len(args) == 2:
            return name, dist.Normal(float(args[0]), float(args[1]))
        if not args:
            return name, float(kind)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{spec!r}: use name=uniform:lo:hi, name=normal:mean:sd or name=value")


def _parse_assignment(spec: str) -> tuple[str, float]:
    name, sep, value = spec.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: use name=value") from None


def _parse_scan(spec: str) -> tuple[str, tuple[float, float, int]]:
    name, _, value = spec.partition("=")
    try:
        lo, hi, n = value.split(":")
        return name, (float(lo), float(hi), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: use name=lo:hi:n") from None


def _load_toml(path: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


# ---------------------------------------------------------------------------- commands


def _demo(args) -> None:
    from .demo import DemoSettings, run_demo

    settings = DemoSettings.full() if args.full else DemoSettings.quick()
    summary = run_demo(args.out, settings=settings, device=args.device, seed=args.seed, progress=not args.quiet)
    print((Path(args.out) / "summary.md").read_text())
    print(f"outputs in {args.out}/ (truth {summary['truth']})")


def _train(args) -> None:
    from .datafiles import read_columns, select_columns
    from .model import DensityModel
    from .networks import NetworkConfig
    from .observables import Observable
    from .training import TrainingConfig

    config = _load_toml(args.config) if args.config else {}
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


def _sample(args) -> None:
    from .datafiles import write_columns
    from .model import DensityModel

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
    print(f"wrote {args.n} events to {args.out}")


def _infer(args) -> None:
    from . import bayes, profile
    from .datafiles import read_columns, select_columns
    from .model import DensityModel

    if not args.scan and not args.prior:
        raise SystemExit("gmmpyro infer: give --prior (posterior) and/or --scan (profile likelihood)")
    model = DensityModel.load(args.model, map_location=args.device)
    names = [o.name for o in model.observables]
    x_obs = torch.from_numpy(select_columns(read_columns(args.events, names={"x": names}), names, path=args.events))
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
        )
        idata.to_netcdf(str(out / "posterior.nc"))
        import arviz as az

        print(az.summary(idata))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmmpyro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="end-to-end demonstration on the built-in toy", description=_demo_description()
    )
    demo.add_argument("--out", default="gmmpyro-demo", help="output directory (default: gmmpyro-demo)")
    demo.add_argument("--full", action="store_true", help="paper-size training set and longer chains")
    demo.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random stream (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)

    train = commands.add_parser(
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
        type=_parse_assignment,
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
    train.set_defaults(run=_train)

    sample = commands.add_parser("sample", help="draw events from a trained model")
    sample.add_argument("model", help="a model saved by DensityModel.save (.gmm)")
    sample.add_argument(
        "--theta", nargs="+", type=_parse_assignment, required=True, metavar="NAME=VALUE", help="the parameter point"
    )
    sample.add_argument("-n", type=int, required=True, help="number of events")
    sample.add_argument("--seed", type=int, help="seed of the draw (default: fresh randomness)")
    sample.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    sample.add_argument("--out", required=True, help=".npz, .csv or .parquet file to write")
    sample.set_defaults(run=_sample)

    infer = commands.add_parser("infer", help="posterior and/or profile scan for observed events")
    infer.add_argument("model", help="a model saved by DensityModel.save (.gmm)")
    infer.add_argument("--events", required=True, help="observed events file")
    infer.add_argument(
        "--prior",
        nargs="+",
        type=parse_prior,
        metavar="NAME=PRIOR",
        help="name=uniform:lo:hi, name=normal:mean:sd or name=value (fixed); runs NUTS",
    )
    infer.add_argument("--scan", nargs="+", type=_parse_scan, metavar="NAME=LO:HI:N", help="profile-likelihood grid")
    infer.add_argument("--profile", nargs="+", metavar="NAME", help="parameters minimised at every grid point")
    infer.add_argument(
        "--constraint",
        nargs="+",
        type=parse_prior,
        metavar="NAME=normal:MEAN:SD",
        help="Gaussian constraint terms of the profile likelihood (auxiliary measurements)",
    )
    infer.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    infer.add_argument("--warmup", type=int, default=1000, help="warm-up steps per chain (default 1000)")
    infer.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    infer.add_argument("--seed", type=int, default=0, help="seed of the chains (default 0)")
    infer.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    infer.add_argument(
        "--out", default="gmmpyro-infer", help="output folder: posterior.nc, scan.json (default gmmpyro-infer)"
    )
    infer.set_defaults(run=_infer)

    from .report import add_report_command

    add_report_command(commands)
    return parser


def _demo_description() -> str:
    from .demo import __doc__ as demo_doc

    return demo_doc


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``gmmpyro`` command."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, ImportError) as error:
        raise SystemExit(f"gmmpyro {args.command}: {error}") from error


if __name__ == "__main__":
    main()
