"""The end-to-end demonstration on the built-in toy (``gmmpyro demo``).

Simulate the training grid of the reference toy with a nuisance parameter ``nu`` that
shifts ``x3``; train a :class:`~gmmpyro.DensityModel`; draw a 400-event pseudo-dataset at a
true point; run the NUTS posterior of ``(cx, cy)`` with ``nu`` as a constrained nuisance
(prior ``Normal(0, 1)``); scan the profile likelihood of ``(cx, cy)`` with ``nu`` profiled
under the same unit-Gaussian constraint; write the model, the ArviZ data, the scan, the
validation figures, a posterior-vs-profile figure and a ``summary.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .networks import NetworkConfig

if TYPE_CHECKING:
    from .report import ReportConfig

__all__ = ["DemoSettings", "run_demo"]


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
        from .report import ReportConfig

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


def _grid(settings: DemoSettings) -> torch.Tensor:
    values = torch.arange(-1.5, 1.51, 0.5, dtype=torch.float64)
    nu = torch.tensor(settings.nu_values, dtype=torch.float64)
    return torch.cartesian_prod(values, values, nu)  # G 3


def run_demo(
    out_dir: str | Path = "gmmpyro-demo",
    *,
    settings: DemoSettings | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the whole demonstration and write its outputs to ``out_dir``.

    Returns:
        The summary as a dictionary (also written as ``summary.json`` and ``summary.md``).
    """
    import arviz as az
    import pyro.distributions as dist

    from . import bayes, plotting, profile
    from .model import DensityModel
    from .report import ReportConfig, write_report
    from .toy import ToyModel, paper_config, paper_training_config

    settings = settings or DemoSettings.quick()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    toy = ToyModel(x3_shift=settings.x3_shift)
    x, theta = toy.grid_dataset(settings.per_point, grid=_grid(settings), seed=seed)

    torch.manual_seed(seed)
    network = paper_config() if settings.paper_network else QUICK_NETWORK
    model = DensityModel(toy.observables, toy.params, config=network, device=device)
    tic = time.perf_counter()
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
    timings["training"] = time.perf_counter() - tic
    model.save(out / "model.gmm")

    names = list(toy.params)
    truth = torch.tensor([settings.truth[n] for n in names], dtype=torch.float64)
    x_obs = toy.sample(settings.n_events, truth, seed=seed + 1).float()
    np.savez(out / "observed.npz", x=x_obs.numpy())

    priors = {"cx": dist.Uniform(-1.5, 1.5), "cy": dist.Uniform(-1.5, 1.5), "nu": dist.Normal(0.0, 1.0)}
    tic = time.perf_counter()
    idata = bayes.sample_posterior(
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
    timings["nuts"] = time.perf_counter() - tic
    idata.to_netcdf(str(out / "posterior.nc"))

    tic = time.perf_counter()
    constraints = {"nu": torch.distributions.Normal(0.0, 1.0)}
    bounds = dict(zip(names, model.theta_bounds.tolist(), strict=True))
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
    scan = profile.scan(model, x_obs, grid, profile=["nu"], constraints=constraints, bounds=bounds)
    timings["profile_scan"] = time.perf_counter() - tic
    with open(out / "scan.json", "w") as handle:
        json.dump(scan.to_dict(), handle, default=_jsonable)

    fig = plotting.compare(scan, idata)
    fig.savefig(out / "posterior_vs_profile.png", dpi=120)
    reference = theta[:, 0].eq(0) & theta[:, 1].eq(0) & theta[:, 2].eq(0)
    tic = time.perf_counter()
    report = write_report(
        model,
        x[reference].float(),
        theta[reference].float(),
        truth=toy,
        out_dir=out / "validation",
        seed=seed,
        progress=progress,
        config=settings.report or ReportConfig.quick(),
    )
    timings["validation"] = time.perf_counter() - tic

    summary = _summary(settings, truth, names, scan, idata, az, timings, model, report)
    with open(out / "summary.json", "w") as handle:
        json.dump(summary, handle, indent=2, default=_jsonable)
    (out / "summary.md").write_text(_markdown(summary))
    return summary


def _jsonable(value):
    if isinstance(value, np.ndarray | torch.Tensor):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _summary(settings, truth, names, scan, idata, az, timings, model, report) -> dict:
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
        "truth": dict(zip(names, truth.tolist(), strict=True)),
        "mle": {name: float(scan.mle.values[name]) for name in names},
        "mle_errors": {name: float(scan.mle.errors[name]) for name in names},
        "profile": profile_result,
        "posterior": posterior,
        "timings_s": timings,
        "model": {"parameters": model.n_parameters, "epochs": model.history.n_epochs},
        "validation": report.to_dict() if hasattr(report, "to_dict") else str(report),
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
