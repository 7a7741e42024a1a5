"""``gmmpyro train``: train a :class:`~gmmpyro.DensityModel` on simulated events in a file."""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from ..data_parallel import is_main_process
from ..datafiles import read_columns, select_columns
from ..exceptions import GmmpyroWarning
from ..model import DensityModel
from ..streaming import ParquetEvents
from ..training import TrainingConfig
from .config import TrainConfigFile, load_train_config
from .errors import CommandInterruptedError
from .files import check_output_file, check_output_folder
from .parsing import parse_assignment, parse_device, parse_observable

__all__ = ["add_train_command", "checkpoint_folder", "run_train"]


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
        description="Train a DensityModel on events in a .npz, .csv or .parquet file. A checkpoint is saved after "
        "every epoch: after Ctrl-C (exit status 130) the same command resumes the run. Under "
        "`torchrun --nproc-per-node N -m gmmpyro train ...` N processes train one model together "
        "(data parallel; with --device cuda each on its own GPU) and the first writes it.",
    )
    train.add_argument(
        "data",
        help="events file with one column per observable and per parameter, or a folder of .parquet files "
        "(streamed; see --window-rows)",
    )
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
        "--score",
        nargs="+",
        metavar="COLUMN",
        help="columns of the simulator's joint score t = ∇θ log p(x, z|θ), one per parameter in --params order; "
        "adds score-weight × |∇θ log p̂ - t|² to the loss",
    )
    train.add_argument(
        "--score-weight", type=float, metavar="ALPHA", help="weight of the joint-score term (needed with --score)"
    )
    train.add_argument(
        "--reference",
        nargs="+",
        type=parse_assignment,
        metavar="NAME=VALUE",
        help="the reference point of the projection (default: the point nearest the centre; all if θ is off-grid)",
    )
    train.add_argument("--config", metavar="TOML", help="file with observables, params, [network], [training]")
    train.add_argument(
        "--ensemble",
        type=int,
        metavar="K",
        help="train K members together, combined as an equal mixture (default 1; see DensityModel(ensemble=K))",
    )
    train.add_argument("--epochs", type=int, help="maximum epochs")
    train.add_argument("--batch-size", type=int, help="events per optimisation step (default 500)")
    train.add_argument("--seed", type=int, help="seed of the split, the initial weights and the batches")
    train.add_argument(
        "--window-rows",
        type=int,
        metavar="N",
        help="stream the Parquet events N rows at a time instead of loading them (default for a folder: 1000000)",
    )
    train.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    train.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="save every epoch there and resume from it; kept after training (default: OUT.checkpoint, "
        "removed once OUT is saved)",
    )
    train.add_argument("--out", required=True, help="model file to write")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)
    return train


def run_train(args: argparse.Namespace) -> None:
    """Run ``gmmpyro train`` from parsed arguments: train, save the model, print its history.

    Every output and the settings are checked before the events are read. Training saves a
    checkpoint after every epoch (see :func:`checkpoint_folder`); an interrupted run keeps it,
    does not write ``--out``, and is resumed by running the same command again.

    Raises:
        CommandInterruptedError: Ctrl-C stopped the training.
    """
    settings = load_train_config(args.config) if args.config else TrainConfigFile()
    observables = args.observables or list(settings.observables)
    params = args.params or list(settings.params)
    if not observables or not params:
        raise SystemExit("gmmpyro train: give --observables and --params (or a --config file naming them)")
    ensemble = args.ensemble if args.ensemble is not None else settings.ensemble
    if ensemble < 1:
        raise ValueError(f"--ensemble must be >= 1 (the number of members), got {ensemble}")
    overrides = {"max_epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    training = replace(settings.training, **{k: v for k, v in overrides.items() if v is not None})
    checkpoint = checkpoint_folder(args.out, args.checkpoint_dir, training)
    check_output_file(args.out)
    if checkpoint is not None:
        check_output_folder(checkpoint)
    reference = _reference_point(dict(args.reference or []) or settings.reference, params)
    weights_column = args.weights or settings.weights
    if args.score is not None and len(args.score) != len(params):
        raise ValueError(f"--score names {len(args.score)} columns; give one per parameter {params}, in that order")
    if args.window_rows is not None or Path(args.data).is_dir():
        window = {"window_rows": args.window_rows} if args.window_rows is not None else {}
        data, score = (ParquetEvents(args.data, weights=weights_column, score=args.score, **window),), None
    else:
        *data, score = _read_training_events(args.data, observables, params, weights_column, args.score)

    torch.manual_seed(training.seed)  # the networks' initial weights
    model = DensityModel(
        observables, params, config=settings.network, ensemble=ensemble, device=_process_device(args.device)
    )
    with warnings.catch_warnings():
        # the library's "best weights so far are kept" is not what the command does on Ctrl-C
        warnings.filterwarnings("ignore", message="training interrupted", category=GmmpyroWarning)
        history = model.fit(
            *data,
            score=score,
            score_weight=args.score_weight,
            reference=reference,
            config=training,
            progress=not args.quiet,
            checkpoint_dir=checkpoint,
        )
    if history.interrupted:
        raise _interruption(args.out, checkpoint, history.n_epochs)
    if not is_main_process():  # under torchrun every process holds the same model: one writes it
        return
    model.save(args.out)
    if checkpoint is not None and args.checkpoint_dir is None:
        shutil.rmtree(checkpoint)  # the default folder served this run only: the model is saved
    print(f"saved {args.out}: {history!r}")


def checkpoint_folder(out: str, checkpoint_dir: str | None, training: TrainingConfig) -> Path | None:
    """Where ``gmmpyro train`` saves its checkpoints: ``--checkpoint-dir``, else ``OUT.checkpoint``.

    Only joint training has checkpoints: ``None`` for ``joint = false``, where
    ``--checkpoint-dir`` is an error.

    Example:
        >>> checkpoint_folder("models/m.gmm", None, TrainingConfig()).as_posix()
        'models/m.gmm.checkpoint'
    """
    if not training.joint:
        if checkpoint_dir is not None:
            raise ValueError("--checkpoint-dir needs joint = true in [training]")
        return None
    if checkpoint_dir is not None:
        return Path(checkpoint_dir)
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def _process_device(device: torch.device | None) -> torch.device | None:
    """``device``, with this process's GPU (``LOCAL_RANK``) for a bare ``cuda`` under ``torchrun``.

    Example:
        >>> _process_device(torch.device("cpu"))
        device(type='cpu')
    """
    if device is not None and device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _reference_point(reference: dict[str, float] | None, params: list[str]) -> list[float] | None:
    """The reference point as a list in the order of ``params``; ``None`` if not given."""
    if not reference:
        return None
    unknown, missing = set(reference) - set(params), set(params) - set(reference)
    if unknown or missing:
        raise ValueError(
            f"the reference point needs exactly the parameters {params}; unknown {sorted(unknown)}, "
            f"missing {sorted(missing)}"
        )
    return [float(reference[p]) for p in params]


def _read_training_events(path: str, observables, params: list[str], weights_column: str | None, score_columns):
    """``(x (N, d), θ (N, k), weights (N,) or None, joint scores (N, k) or None)`` from the events file."""
    names = {"x": [o.name for o in observables], "theta": list(params)}
    columns = read_columns(path, names=names)
    x = torch.from_numpy(select_columns(columns, names["x"], path=path))
    theta = torch.from_numpy(select_columns(columns, names["theta"], path=path))
    weights = None if weights_column is None else select_columns(columns, [weights_column], path=path)[:, 0]
    score = None if score_columns is None else select_columns(columns, score_columns, path=path)
    return x, theta, *(None if a is None else torch.from_numpy(a) for a in (weights, score))


def _interruption(out: str, checkpoint: Path | None, n_epochs: int) -> CommandInterruptedError:
    """What to tell the user after Ctrl-C, depending on whether a checkpoint was saved."""
    done = f"interrupted after {n_epochs} epoch(s); {out} was not written"
    if checkpoint is not None and n_epochs > 0:
        return CommandInterruptedError(f"{done}; the run is saved in {checkpoint}", resumable=True)
    if checkpoint is None:
        return CommandInterruptedError(f"{done}; nothing was kept (checkpoints need joint = true)", resumable=False)
    return CommandInterruptedError(f"{done}; nothing to resume (no epoch had ended)", resumable=False)
