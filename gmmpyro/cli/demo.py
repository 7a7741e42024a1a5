"""The end-to-end demonstration on the built-in toy (``gmmpyro demo``).

Simulate the training grid of the reference toy with a nuisance parameter ``nu`` that
shifts ``x3``; train a :class:`~gmmpyro.DensityModel`; draw a 400-event pseudo-dataset at a
true point; run the NUTS posterior of ``(cx, cy)`` with ``nu`` as a constrained nuisance
(prior ``Normal(0, 1)``); scan the profile likelihood of ``(cx, cy)`` with ``nu`` profiled
under the same unit-Gaussian constraint; write the model, the ArviZ data, the scan, the
validation figures, a posterior-vs-profile figure and a ``summary.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..networks import NetworkConfig
from .files import check_output_folder
from .parsing import parse_device

if TYPE_CHECKING:
    from ..report import ReportConfig

__all__ = ["DemoSettings", "add_demo_command", "run_demo", "run_demo_command"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run.

    ``DemoSettings.quick()`` (a smaller network, 1k events per simulated point) finishes in
    about 8 minutes on a 2-core CPU; ``DemoSettings.full()`` uses the paper's network and
    training settings with 10k events per simulated point, longer chains, a finer scan and
    the full validation report.
    """

    per_point: int = 1_000
    nu_values: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    x3_shift: float = 0.3
    batch_size: int = 500
    max_epochs: int = 30
    stop_patience: int = 5
    n_events: int = 400
    truth: dict = field(default_factory=lambda: {"cx": 0.8, "cy": -0.8, "nu": 0.5})
    warmup: int = 300
    draws: int = 500
    chains: int = 4
    scan_points: int = 25
    paper_network: bool = False
    report: ReportConfig | None = None  # None: ReportConfig.quick()

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls()

    @classmethod
    def full(cls) -> DemoSettings:
        from ..report import ReportConfig

        return cls(
            per_point=10_000,
            paper_network=True,
            max_epochs=200,
            stop_patience=10,
            warmup=1000,
            draws=1000,
            scan_points=61,
            report=ReportConfig(),
        )


QUICK_NETWORK = NetworkConfig(n_gauss=12, A1=32, B1=32, B2=12, C=2, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1)
"""The quick preset's network: about 6× cheaper to evaluate than the paper's."""

_CONSTRAINT = (0.0, 1.0)  # mean and width of the unit Gaussian on nu, in the posterior and the profile


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
    toy, x, theta = _simulate(settings, seed)
    with _timed(timings, "training"):
        model = _train(toy, x, theta, settings, device=device, seed=seed, progress=progress)
    model.save(out / "model.gmm")

    x_obs = _observe(toy, settings, seed)
    np.savez(out / "observed.npz", x=x_obs.numpy())
    with _timed(timings, "nuts"):
        idata = _posterior(model, x_obs, settings, device=device, seed=seed, progress=progress)
    idata.to_netcdf(str(out / "posterior.nc"))
    with _timed(timings, "profile_scan"):
        scan = _profile_scan(model, x_obs, settings)
    with open(out / "scan.json", "w") as handle:
        json.dump(scan.to_dict(), handle, default=_jsonable)

    fig = plotting.compare(scan, idata)
    fig.savefig(out / "posterior_vs_profile.png", dpi=120)
    plt.close(fig)
    with _timed(timings, "validation"):
        report = _validate(model, toy, x, theta, settings, out_dir=out / "validation", seed=seed, progress=progress)

    summary = _summary(settings, list(toy.params), scan, idata, timings, model, report)
    with open(out / "summary.json", "w") as handle:
        json.dump(summary, handle, indent=2, default=_jsonable)
    (out / "summary.md").write_text(_markdown(summary))
    return summary


# ------------------------------------------------------------------------------- steps


@contextlib.contextmanager
def _timed(timings: dict, step: str):
    tic = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - tic


def _simulate(settings: DemoSettings, seed: int):
    """The toy and its training grid: ``(toy, x (N, 4), θ (N, 3))``."""
    from ..toy import ToyModel

    toy = ToyModel(x3_shift=settings.x3_shift)
    values = torch.arange(-1.5, 1.51, 0.5, dtype=torch.float64)
    nu = torch.tensor(settings.nu_values, dtype=torch.float64)
    grid = torch.cartesian_prod(values, values, nu)  # G 3
    x, theta = toy.grid_dataset(settings.per_point, grid=grid, seed=seed)
    return toy, x, theta


def _train(toy, x, theta, settings: DemoSettings, *, device, seed: int, progress: bool):
    """A :class:`~gmmpyro.DensityModel` trained on the grid; ``seed`` fixes its initial weights and batches."""
    from ..model import DensityModel
    from ..toy import paper_config, paper_training_config

    torch.manual_seed(seed)
    network = paper_config() if settings.paper_network else QUICK_NETWORK
    model = DensityModel(toy.observables, toy.params, config=network, device=device)
    model.fit(
        x.float(),
        theta.float(),
        reference=[0.0, 0.0, 0.0],
        progress=progress,
        config=paper_training_config(
            batch_size=settings.batch_size,
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
    )


def _profile_scan(model, x_obs, settings: DemoSettings):
    """Profile-likelihood scan of ``(cx, cy)`` with ``nu`` profiled under its constraint."""
    from .. import profile

    constraints = {"nu": torch.distributions.Normal(*_CONSTRAINT)}
    bounds = dict(zip(model.params, model.theta_bounds.tolist(), strict=True))
    mle = profile.fit(model, x_obs, constraints=constraints, bounds=bounds)
    # scan ± 5 Hessian standard deviations around the MLE: the contours are resolved by the grid
    grid = {
        name: (
            max(bounds[name][0], mle.values[name] - 5 * mle.errors[name]),
            min(bounds[name][1], mle.values[name] + 5 * mle.errors[name]),
            settings.scan_points,
        )
        for name in ("cx", "cy")
    }
    return profile.scan(model, x_obs, grid, profile=["nu"], constraints=constraints, bounds=bounds)


def _validate(model, toy, x, theta, settings: DemoSettings, *, out_dir: Path, seed: int, progress: bool):
    """The validation report on the simulated events at the reference point ``θ = 0``."""
    from ..report import ReportConfig, write_report

    reference = theta[:, 0].eq(0) & theta[:, 1].eq(0) & theta[:, 2].eq(0)
    return write_report(
        model,
        x[reference].float(),
        theta[reference].float(),
        truth=toy,
        out_dir=out_dir,
        seed=seed,
        progress=progress,
        config=settings.report or ReportConfig.quick(),
    )


# ----------------------------------------------------------------------------- summary


def _jsonable(value):
    if isinstance(value, np.ndarray | torch.Tensor):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _summary(settings, names, scan, idata, timings, model, report) -> dict:
    import arviz as az

    table = az.summary(idata, var_names=names, kind="all", hdi_prob=0.68)
    posterior = {}
    for name in names:
        draws = np.asarray(idata.posterior[name]).reshape(-1)
        posterior[name] = {
            "mean": float(draws.mean()),
            "sd": float(draws.std()),
            "hdi68": [float(v) for v in az.hdi(draws, hdi_prob=0.68)],
            "hdi95": [float(v) for v in az.hdi(draws, hdi_prob=0.95)],
            "r_hat": float(table.loc[name, "r_hat"]),
            "ess_bulk": float(table.loc[name, "ess_bulk"]),
        }
    profile_result = {
        name: {"interval68": list(scan.interval(name, 0.68)), "interval95": list(scan.interval(name, 0.95))}
        for name in ("cx", "cy")
    }
    return {
        "settings": {k: v for k, v in asdict(settings).items() if k != "report"},
        "truth": {name: float(settings.truth[name]) for name in names},
        "mle": {name: float(scan.mle.values[name]) for name in names},
        "mle_errors": {name: float(scan.mle.errors[name]) for name in names},
        "profile": profile_result,
        "posterior": posterior,
        "timings_s": timings,
        "model": {"parameters": model.n_parameters, "epochs": model.history.n_epochs},
        "validation": report.to_dict(),
    }


def _markdown(summary: dict) -> str:
    lines = ["# gmmpyro demo", "", "Reference toy with a nuisance parameter `nu` shifting `x3`.", ""]
    truth, posterior, prof = summary["truth"], summary["posterior"], summary["profile"]
    lines += [
        "| parameter | truth | MLE | profile 68 % | profile 95 % | posterior mean | HDI 68 % | HDI 95 % "
        "| R-hat | bulk ESS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(pair):
        return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"

    for name, true in truth.items():
        p = posterior[name]
        mle = summary["mle"][name]
        i68 = fmt(prof[name]["interval68"]) if name in prof else "profiled"
        i95 = fmt(prof[name]["interval95"]) if name in prof else "profiled"
        lines.append(
            f"| {name} | {true:+.3f} | {mle:+.3f} | {i68} | {i95} | {p['mean']:+.3f} | {fmt(p['hdi68'])} | "
            f"{fmt(p['hdi95'])} | {p['r_hat']:.3f} | {p['ess_bulk']:.0f} |"
        )
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {step} | {seconds:.1f} |" for step, seconds in summary["timings_s"].items()]
    lines += [
        "",
        f"Model: {summary['model']['parameters']} parameters, {summary['model']['epochs']} epochs.",
        "",
        "![posterior vs profile](posterior_vs_profile.png)",
        "",
        "Validation figures and numbers: [validation/summary.md](validation/summary.md).",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ command


def add_demo_command(subparsers) -> argparse.ArgumentParser:
    """Add ``gmmpyro demo [--out DIR] [--full] [--device D] [--seed S] [--quiet]`` to a CLI.

    Arguments:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``demo`` sub-parser; its ``run`` default is :func:`run_demo_command`.
    """
    demo = subparsers.add_parser("demo", help="end-to-end demonstration on the built-in toy", description=__doc__)
    demo.add_argument("--out", default="gmmpyro-demo", help="output directory (default: gmmpyro-demo)")
    demo.add_argument("--full", action="store_true", help="paper-size training set and longer chains")
    demo.add_argument("--device", type=parse_device, help="torch device, e.g. cuda or cuda:1 (default: cpu)")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random stream (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=run_demo_command)
    return demo


def run_demo_command(args: argparse.Namespace) -> None:
    """Run ``gmmpyro demo`` from parsed arguments and print its ``summary.md``."""
    check_output_folder(args.out)
    settings = DemoSettings.full() if args.full else DemoSettings.quick()
    summary = run_demo(args.out, settings=settings, device=args.device, seed=args.seed, progress=not args.quiet)
    print((Path(args.out) / "summary.md").read_text())
    print(f"outputs in {args.out}/ (truth {summary['truth']})")
