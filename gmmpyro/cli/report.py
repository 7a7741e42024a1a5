"""``gmmpyro report``: validate a trained model against reference events (:func:`gmmpyro.report.write_report`)."""

from __future__ import annotations

import argparse

from .files import check_output_folder

__all__ = ["add_report_command", "run_report"]


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro report MODEL --reference EVENTS [--truth toy] --out DIR`` to a CLI.

    The parser's ``run`` default is :func:`run_report` (call ``args.run(args)``, as
    ``gmmpyro.cli.main`` does; it returns the exit status 0, and on bad input exits with status 2,
    the usage line and a message naming the problem).

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``report`` sub-parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="gmmpyro")
        >>> sub = add_report_command(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["report", "toy.gmm", "--reference", "ev.npz", "--out", "rep"])
        >>> args.model, args.truth, args.quick
        ('toy.gmm', None, False)
    """
    parser = subparsers.add_parser(
        "report",
        help="validate a trained model against reference events: figures and a summary",
        description=(
            "Compare a trained model with reference events (and the true density, for the toy): "
            "writes PNG figures, summary.md and summary.json with a verdict per metric into DIR."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a model saved by DensityModel.save (.gmm)")
    parser.add_argument(
        "--reference",
        required=True,
        metavar="EVENTS",
        help="reference events (.npz, .csv or .parquet): one column per observable and optionally one per "
        "parameter, or .npz arrays x (N, d) and theta (N, k)",
    )
    parser.add_argument("--truth", choices=["toy"], help="the true density, if known: 'toy' (gmmpyro.toy.ToyModel)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the report folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--quick", action="store_true", help="smaller samples and grids (ReportConfig.quick)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=lambda args: run_report(args, parser))
    return parser


def run_report(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the ``report`` command from parsed arguments; returns the exit status (0)."""
    from ..model import DensityModel
    from ..report import ReportConfig, load_events, write_report

    def fail(message: str):
        if parser is not None:
            parser.error(message)  # exits with status 2 and the usage line
        raise SystemExit(f"gmmpyro report: error: {message}")

    try:
        check_output_folder(args.out)
        model = DensityModel.load(args.model)
    except (ValueError, OSError) as error:
        fail(str(error))
    truth = None
    if args.truth == "toy":
        from ..toy import ToyModel

        truth = ToyModel()
    try:
        x, theta = load_events(args.reference, model.observables, model.params)
        result = write_report(
            model,
            x,
            theta,
            truth=truth,
            out_dir=args.out,
            seed=args.seed,
            progress=not args.quiet,
            config=ReportConfig.quick() if args.quick else None,
        )
    except ValueError as error:
        fail(str(error))
    print(f"{result.verdict}: report written to {result.summary_md}")
    for key, (verdict, line) in result.verdicts.items():
        print(f"  {verdict:<5} {key}: {line}")
    return 0
