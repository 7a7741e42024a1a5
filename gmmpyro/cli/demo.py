"""The end-to-end demonstration on the built-in toy (``gmmpyro demo``).

Simulate training events of the reference toy with a nuisance parameter ``nu`` that shifts
``x3``, each at its own parameter point and with its joint score; train a
:class:`~gmmpyro.DensityModel`; draw a 400-event pseudo-dataset at a true point; run the NUTS
posterior of ``(cx, cy)`` with ``nu`` as a constrained nuisance (prior ``Normal(0, 1)``); scan
the profile likelihood of ``(cx, cy)`` with ``nu`` profiled under the same unit-Gaussian
constraint; validate the model on fresh simulated events at 27 parameter points; write the
model, the ArviZ data, the scan, the validation report, a posterior-vs-profile figure and a
``summary.md``, and print the results table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..networks import NetworkConfig
from .files import check_output_folder
from .parsing import parse_device
from .results import markdown_table, result_rows, text_table

if TYPE_CHECKING:
    from ..report import ReportConfig

__all__ = ["FIGURE", "DemoSettings", "add_demo_command", "print_summary", "run_demo", "run_demo_command"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run.

    Training events: ``per_point`` times the 245 points of the grid ``cx, cy ∈ {-1.5, -1, …,
    1.5}``, ``nu ∈ nu_values``, each at its own ``(cx, cy, nu)`` drawn uniformly over the grid's
    box and trained with the toy's joint score (weight ``score_weight``); with
    ``score_weight=None``, ``per_point`` events at each grid point and no score.
    ``DemoSettings.quick()`` (a small ``"film"`` network trained in batches of 2000 for 25 epochs
    on 147 000 events, NUTS 4 × (120 + 160)) finishes in about 5 minutes on a 2-core CPU;
    ``DemoSettings.full()`` uses the paper's network and training settings on 490 000 events,
    longer chains, a finer scan and the full validation report.

    Example:
        >>> DemoSettings.quick().scan_points, DemoSettings.full().batch_size
        (15, 500)
    """

    per_point: int = 600
    nu_values: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    x3_shift: float = 0.3
    batch_size: int = 2_000
    learning_rate: float = 3e-3
    max_epochs: int = 25
    stop_patience: int = 5
    n_events: int = 400
    truth: dict = field(default_factory=lambda: {"cx": 0.8, "cy": -0.8, "nu": 0.5})
    warmup: int = 120
    draws: int = 160
    chains: int = 4
    scan_points: int = 15
    validation_per_point: int = 1_000
    paper_network: bool = False
    score_weight: float | None = 1.0
    report: ReportConfig | None = None  # None: ReportConfig.quick() with the nine pseudo-datasets of Fig. 15

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls()

    @classmethod
    def full(cls) -> DemoSettings:
        from ..report import ReportConfig

        return cls(
            per_point=2_000,
            paper_network=True,
            batch_size=500,
            learning_rate=1e-3,
            max_epochs=200,
            stop_patience=10,
            warmup=1000,
            draws=1000,
            scan_points=41,
            validation_per_point=10_000,
            report=ReportConfig(),
        )


QUICK_NETWORK = NetworkConfig(
    n_gauss=12, A1=32, B1=32, B2=12, C=2, D=2, s_f=0.01, s_mu=0.01, s_sigma=0.01, design="film", film_width=32
)
"""The quick preset's network: θ modulates a 32-wide layer (``docs/benchmarks.md``: the demo's network)."""

_CONSTRAINT = (0.0, 1.0)  # mean and width of the unit Gaussian on nu, in the posterior and the profile
_VALIDATION_VALUES = {"cx": (-0.8, 0.0, 0.8), "cy": (-0.8, 0.0, 0.8), "nu": (-1.0, 0.0, 1.0)}
_HELP = """Run the whole workflow on the built-in toy of Menary & Price, with a nuisance parameter nu:
simulate training events (each at its own parameter point, with the toy's joint score), train a model,
draw 400 pseudo-data events at (cx, cy, nu) = (0.8, -0.8, 0.5),
infer (cx, cy) with NUTS (nu marginalised, prior Normal(0, 1)) and with a profile-likelihood scan
(nu profiled under the same constraint), validate the model on fresh simulated events, and write
the figures and a summary into the output folder. The results table and the validation verdict are
printed at the end."""


def run_demo(
    out_dir: str | Path = "gmmpyro-demo",
    *,
    settings: DemoSettings | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the whole demonstration and write its outputs to ``out_dir``.

    Returns:
        The summary as a dictionary (also written as ``summary.json`` and ``summary.md``).
    """
    import matplotlib.pyplot as plt

    from .. import plotting

    settings = settings or DemoSettings.quick()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    toy, x, theta, score = _simulate(settings, seed)
    if score is None:
        where = f"at {len(np.unique(theta.numpy(), axis=0))} parameter points"
    else:
        where = "each at its own parameter point, with the joint score"
    with _step(timings, "training", f"training on {len(x):,} simulated events {where}", progress):
        model = _train(toy, x, theta, score, settings, device=device, seed=seed, progress=progress)
    model.save(out / "model.gmm")

    x_obs = _observe(toy, settings, seed)
    np.savez(out / "observed.npz", x=x_obs.numpy())
    runs = f"{settings.chains} chains x ({settings.warmup} + {settings.draws}) iterations"
    with _step(timings, "nuts", f"NUTS posterior of {', '.join(toy.params)}: {runs}", progress):
        idata = _posterior(model, x_obs, settings, device=device, seed=seed, progress=progress)
    idata.to_netcdf(str(out / "posterior.nc"))
    n = settings.scan_points
    with _step(
        timings, "profile_scan", f"profile-likelihood scan: {n} x {n} points around the MLE, nu profiled", progress
    ):
        scan = _profile_scan(model, x_obs, settings)
    with open(out / "scan.json", "w") as handle:
        json.dump(scan.to_dict(), handle, default=_jsonable)

    fig = plotting.compare(scan, idata, truth={n: settings.truth[n] for n in scan.params})
    fig.savefig(out / FIGURE, dpi=120)
    plt.close(fig)
    events = settings.validation_per_point * math.prod(len(v) for v in _VALIDATION_VALUES.values())
    with _step(timings, "validation", f"validation on {events:,} fresh simulated events", progress):
        report = _validate(model, toy, settings, out_dir=out / "validation", seed=seed, progress=progress)

    summary = _summary(settings, list(toy.params), scan, idata, timings, model, report)
    with open(out / "summary.json", "w") as handle:
        json.dump(summary, handle, indent=2, default=_jsonable)
    (out / "summary.md").write_text(_markdown(summary))
    return summary


FIGURE = "posterior_vs_profile.png"
"""The demo's headline figure, in its output folder."""


# ------------------------------------------------------------------------------- steps


@contextlib.contextmanager
def _step(timings: dict, step: str, message: str, progress: bool):
    """Time a step into ``timings[step]``; with ``progress``, say what it does on standard error first."""
    if progress:
        print(f"{message} ...", file=sys.stderr, flush=True)
    tic = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - tic


def _simulate(settings: DemoSettings, seed: int):
    """The toy and its training events: ``(toy, x (N, 4), θ (N, 3), joint score (N, 3) or None)``.

    Without ``settings.score_weight`` the events lie on the grid, ``per_point`` at each point;
    with it, as many events each at its own θ drawn uniformly over the grid's box, with the
    toy's exact joint score.
    """
    from .. import designs
    from ..toy import ToyModel

    toy = ToyModel(x3_shift=settings.x3_shift)
    values = torch.arange(-1.5, 1.51, 0.5, dtype=torch.float64)
    nu = torch.tensor(settings.nu_values, dtype=torch.float64)
    grid = torch.cartesian_prod(values, values, nu)  # G 3
    if settings.score_weight is None:
        x, theta = toy.grid_dataset(settings.per_point, grid=grid, seed=seed)
        return toy, x, theta, None
    box = torch.stack([grid.min(0).values, grid.max(0).values], -1)  # 3 2
    theta = designs.uniform(settings.per_point * len(grid), box, seed=seed)
    x, score = toy.simulate(theta, seed=seed + 1, score=True)
    return toy, x, theta, score


def _train(toy, x, theta, score, settings: DemoSettings, *, device, seed: int, progress: bool):
    """A :class:`~gmmpyro.DensityModel` trained on the events; ``seed`` fixes its initial weights and batches."""
    from ..model import DensityModel
    from ..toy import paper_config, paper_training_config

    torch.manual_seed(seed)
    network = paper_config() if settings.paper_network else QUICK_NETWORK
    model = DensityModel(toy.observables, toy.params, config=network, device=device)
    model.fit(
        x.float(),
        theta.float(),
        score=None if score is None else score.float(),
        score_weight=settings.score_weight,
        reference=None if score is not None else [0.0, 0.0, 0.0],
        progress=progress,
        config=paper_training_config(
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            max_epochs=settings.max_epochs,
            stop_patience=settings.stop_patience,
            seed=seed,
        ),
    )
    return model


def _observe(toy, settings: DemoSettings, seed: int) -> torch.Tensor:
    """The pseudo-dataset drawn at ``settings.truth``, shape ``(n_events, 4)``."""
    truth = torch.tensor([settings.truth[n] for n in toy.params], dtype=torch.float64)
    return toy.sample(settings.n_events, truth, seed=seed + 1).float()


def _posterior(model, x_obs, settings: DemoSettings, *, device, seed: int, progress: bool):
    """NUTS posterior of ``(cx, cy, nu)``: uniform priors on the training range, ``nu`` constrained."""
    import pyro.distributions as dist

    from .. import bayes

    priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Uniform(-1.5, 1.5), "nu": dist.Normal(*_CONSTRAINT)}
    return bayes.sample_posterior(
        model,
        x_obs,
        priors,
        num_samples=settings.draws,
        warmup_steps=settings.warmup,
        num_chains=settings.chains,
        device=device,
        seed=seed,
        progress=progress,
        sampler="nuts",
    )


def _profile_scan(model, x_obs, settings: DemoSettings):
    """Profile-likelihood scan of ``(cx, cy)`` around the MLE, ``nu`` profiled under its constraint."""
    from .. import profile

    constraints = {"nu": torch.distributions.Normal(*_CONSTRAINT)}
    bounds = dict(zip(model.params, model.theta_bounds.tolist(), strict=True))
    grid = {"cx": settings.scan_points, "cy": settings.scan_points}  # a window from the fit's Hessian errors
    return profile.scan(model, x_obs, grid, profile=["nu"], constraints=constraints, bounds=bounds)


def _validate(model, toy, settings: DemoSettings, *, out_dir: Path, seed: int, progress: bool):
    """The validation report on fresh simulated events at 27 points ``(cx, cy, nu)`` (not the training events)."""
    from ..report import ReportConfig, write_report

    points = torch.cartesian_prod(*(torch.tensor(_VALIDATION_VALUES[n], dtype=torch.float64) for n in toy.params))
    x, theta = toy.grid_dataset(settings.validation_per_point, grid=points, seed=seed + 1000)
    # the inference check's thresholds are for a mean over nine pseudo-datasets; one alone varies by ~0.1 in IoU
    config = settings.report or replace(ReportConfig.quick(), pseudo_points=3)
    return write_report(model, x, theta, truth=toy, out_dir=out_dir, seed=seed, progress=progress, config=config)


# ----------------------------------------------------------------------------- summary


def _jsonable(value):
    if isinstance(value, np.ndarray | torch.Tensor):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _summary(settings, names, scan, idata, timings, model, report) -> dict:
    rows = result_rows(names, scan=scan, idata=idata, truth=settings.truth)
    keys = ("mean", "sd", "hdi68", "hdi95", "r_hat", "ess_bulk")
    return {
        "settings": {k: v for k, v in asdict(settings).items() if k != "report"},
        "truth": {name: float(settings.truth[name]) for name in names},
        "mle": {name: float(scan.mle.values[name]) for name in names},
        "mle_errors": {name: float(scan.mle.errors[name]) for name in names},
        "profile": {
            row["parameter"]: {"interval68": row["profile68"], "interval95": row["profile95"]}
            for row in rows
            if row["parameter"] in scan.params
        },
        "posterior": {row["parameter"]: {k: row[k] for k in keys} for row in rows},
        "table": rows,
        "timings_s": timings,
        "model": {"parameters": model.n_parameters, "epochs": model.history.n_epochs},
        "validation": report.to_dict(),
    }


def _verdict_lines(summary: dict) -> list[str]:
    """The validation verdict and one line per metric, the worst first."""
    validation = summary["validation"]
    order = {"FAIL": 0, "WARN": 1, "PASS": 2, "INFO": 3, "SKIP": 4}
    entries = sorted(validation["verdicts"].items(), key=lambda item: order.get(item[1][0], 5))
    return [f"{verdict:<4}  {key}: {line}" for key, (verdict, line) in entries]


_TRUST = {
    "PASS": "the model reproduces the simulator within the report's thresholds",
    "WARN": "small but significant differences from the simulator: judge them on the report's figures",
    "FAIL": "the model differs from the simulator: do not trust these results before training a better model",
    "SKIP": "nothing was graded",
}


def _markdown(summary: dict) -> str:
    verdict = summary["validation"]["verdict"]
    timings = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in summary["timings_s"].items())
    lines = [
        "# gmmpyro demo",
        "",
        "Reference toy with a nuisance parameter `nu` shifting `x3`; 400 pseudo-data events at the truth.",
        "",
        markdown_table(summary["table"]),
        "",
        f"![profile likelihood beside the posterior]({FIGURE})",
        "",
        f"## Validation on fresh simulated events: **{verdict}**",
        "",
        f"{_TRUST.get(verdict, '')} ([validation/summary.md](validation/summary.md)).",
        "",
        *(f"- {line}" for line in _verdict_lines(summary)),
        "",
        f"Model: {summary['model']['parameters']} parameters, {summary['model']['epochs']} epochs. Time: {timings}.",
        "",
    ]
    return "\n".join(lines)


def print_summary(summary: dict, out_dir: str | Path) -> None:
    """Print the demo's results table, the validation verdict and where the files are.

    Arguments:
        summary: what :func:`run_demo` returns.
        out_dir: its output folder.
    """
    out = Path(out_dir)
    verdict = summary["validation"]["verdict"]
    total = sum(summary["timings_s"].values())
    print()
    truth = ", ".join(f"{name} = {value:g}" for name, value in summary["truth"].items())
    print(f"results from {summary['settings']['n_events']} events simulated at {truth}:")
    print(text_table(summary["table"]))
    print()
    print(f"validation on fresh simulated events: {verdict} — {_TRUST.get(verdict, '')}")
    for line in _verdict_lines(summary):
        print(f"  {line}")
    print()
    print(f"figure:  {out / FIGURE}")
    print(f"summary: {out / 'summary.md'}   validation report: {out / 'validation' / 'summary.md'}")
    print(f"also:    model.gmm, posterior.nc (ArviZ), scan.json, observed.npz   ({total / 60:.1f} min)")


# ------------------------------------------------------------------------------ command


def add_demo_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro demo [--out DIR] [--full] [--device D] [--seed S] [--quiet]`` to a CLI.

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``demo`` sub-parser; its ``run`` default is :func:`run_demo_command`.
    """
    demo = subparsers.add_parser("demo", help="end-to-end demonstration on the built-in toy", description=_HELP)
    demo.add_argument("--out", default="gmmpyro-demo", help="output directory (default: gmmpyro-demo)")
    demo.add_argument("--full", action="store_true", help="paper-size training set and longer chains")
    demo.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random stream (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=run_demo_command)
    return demo


def run_demo_command(args: argparse.Namespace) -> None:
    """Run ``gmmpyro demo`` from parsed arguments and print its results (:func:`print_summary`)."""
    check_output_folder(args.out)
    settings = DemoSettings.full() if args.full else DemoSettings.quick()
    summary = run_demo(args.out, settings=settings, device=args.device, seed=args.seed, progress=not args.quiet)
    print_summary(summary, args.out)
