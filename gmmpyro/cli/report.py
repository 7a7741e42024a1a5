"""``gmmpyro report``: validate a trained model against reference events (:func:`gmmpyro.report.write_report`)."""

from __future__ import annotations

import argparse

from .files import check_output_folder

__all__ = ["add_report_command", "run_report"]


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro report MODEL --reference EVENTS [--truth toy] --out DIR`` to a CLI.

    The parser's ``run`` default is :func:`run_report` (call ``args.run(args)``, as
    ``gmmpyro.cli.main`` does; it returns the exit status: 1 when the report's verdict is FAIL,
    or WARN with ``--strict``, else 0; on bad input it exits with status 2, the usage line and a
    message naming the problem).

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``report`` sub-parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="gmmpyro")
        >>> sub = add_report_command(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["report", "toy.gmm", "--reference", "ev.npz", "--out", "rep"])
        >>> args.model, args.truth, args.quick, args.strict
        ('toy.gmm', None, False, False)
    """
    parser = subparsers.add_parser(
        "report",
        help="validate a trained model against reference events: figures and a summary",
        description=(
            "Compare a trained model with reference events (and the true density, for the toy): "
            "writes PNG figures, summary.md and summary.json with a verdict per metric into DIR. "
            "Exit status: 0 when the overall verdict is PASS, WARN or SKIP; 1 when it is FAIL (or WARN "
            "with --strict), so that scripts and CI can stop on a bad model; 2 for bad input."
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller samples and grids (ReportConfig.quick); the classifier test is then reported, not graded",
    )
    parser.add_argument("--strict", action="store_true", help="exit with status 1 on WARN too, not only on FAIL")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=lambda args: run_report(args, parser))
    return parser


def run_report(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run the ``report`` command from parsed arguments; prints the overall verdict first, then each metric's.

    Arguments:
        args: the parsed command line (``model``, ``reference``, ``truth``, ``out``, ``seed``,
            ``quick``, ``quiet``, ``strict``).
        parser: the ``report`` parser, to exit with its usage line on bad input.

    Returns:
        The exit status: ``1`` if the overall verdict is FAIL, or WARN with ``args.strict``;
        ``0`` for PASS, WARN and SKIP (:meth:`~gmmpyro.report.ReportResult.exit_status`).
    """
    from ..model import DensityModel
    from ..report import ReportConfig, load_events, write_report
    from ..report.summary import overview

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
    status = result.exit_status(strict=getattr(args, "strict", False))
    print(f"{result.verdict}: report written to {result.summary_md}")
    print(f"  {overview({key: verdict for key, (verdict, _) in result.verdicts.items()})}")
    for key, (verdict, line) in result.verdicts.items():
        print(f"  {verdict:<5} {key}: {line}")
    if status:
        why = "FAIL" if result.verdict == "FAIL" else "WARN and --strict"
        print(f"exit status {status}: the verdict is {why}")
    return status
