"""The report's ``summary.md`` and JSON files."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch

__all__ = ["machine", "markdown", "overview", "write_json"]

_GROUPS = (("FAIL", "FAIL"), ("WARN", "WARN"), ("PASS", "PASS"), ("INFO", "not graded"), ("SKIP", "not run"))


def machine() -> str:
    """Platform, CPU, torch and gmmpyro versions, for the record."""
    from .. import __version__

    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) | gmmpyro {__version__}"
    )


def _strict(value):
    """NaN and inf → ``None`` (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(path: Path, data) -> None:
    """Strict JSON (NaN and inf as null) of results, arrays and plain values."""
    from .._results import plain

    path.write_text(json.dumps(_strict(plain(data)), indent=1, allow_nan=False), encoding="utf-8")


def overview(verdicts: dict[str, str]) -> str:
    """The metrics grouped by verdict, worst first, in one line.

    Arguments:
        verdicts: ``{metric: verdict}``.

    Example:
        >>> overview({"kl_gap": "FAIL", "c2st": "INFO", "pairs": "PASS", "marginals_data": "FAIL"})
        'FAIL: kl_gap, marginals_data; PASS: pairs; not graded: c2st'
    """
    groups = []
    for verdict, label in _GROUPS:
        keys = [key for key, v in verdicts.items() if v == verdict]
        if keys:
            groups.append(f"{label}: {', '.join(keys)}")
    return "; ".join(groups)


_FIGURE_NOTES = {
    "marginals_data": (
        "1-D marginals, model (black) vs reference (red); a ratio inside the grey band is within statistics"
    ),
    "marginals_latent": "the same on the latent space, where the networks work",
    "pairs_reference": "2-D marginals of the reference events (white: empty)",
    "pairs_model": "2-D marginals of the model (black: model events where the reference has none)",
    "pairs_pull": "pull map (eq. 10): look for coherent red/blue structures, not single cells",
    "mixture": "the first observable's mixture and its Gaussian components at three θ",
    "inference": "68/95 % regions model (blue) vs truth (orange) with both MLEs, per pseudo-dataset",
    "training": "loss per network (validation solid, training dashed) and learning rate",
}


def markdown(summary: dict, n_parameters: int) -> str:
    """``summary.md`` from the ``summary.json`` content."""
    inputs = summary["inputs"]
    lines = [
        f"# gmmpyro model report — **{summary['verdict']}**",
        "",
        overview({key: entry["verdict"] for key, entry in summary["verdicts"].items()}),
        "",
        f"Model: observables {inputs['observables']}, parameters {inputs['params']}, "
        f"{n_parameters} network parameters. Reference: {inputs['reference_events']} events "
        f"(θ {inputs['reference_theta']}); {inputs['model_events']} model events drawn at the same θ."
        + (f" Truth: `{inputs['truth']}`." if inputs["truth"] else " No true density given."),
        "",
        "| metric | verdict | result and thresholds |",
        "|---|---|---|",
    ]
    for key, entry in summary["verdicts"].items():
        cell = entry["line"].replace("|", "\\|")  # a literal bar inside a table cell
        lines.append(f"| {key} | **{entry['verdict']}** | {cell} |")
    lines += [
        "",
        "The overall verdict is the worst of the graded lines above (INFO: reported but not graded; SKIP: "
        "not run). A WARN on a large sample often means a statistically significant but small "
        "mismodelling: judge it on the ratio panels.",
        "",
        "## Figures",
        "",
    ]
    for name in summary["figures"]:
        stem = name.removesuffix(".png")
        note = _FIGURE_NOTES.get(stem)
        if note is None and stem.startswith("dependence_"):
            observable = stem.removeprefix("dependence_")
            note = f"p(x|θ)/p(x|θ_ref) of {observable}: model reweighted (black) vs truth (dashed) / simulation"
        lines += [f"### {stem}", "", f"{note or ''}", "", f"![{stem}]({name})", ""]
    if summary["warnings"]:
        lines += ["## Warnings raised while the report ran", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    lines += [
        "## Run",
        "",
        f"{inputs['machine']}; seed {inputs['seed']}; {inputs['seconds']:.0f} s. "
        "All numbers: `summary.json`; every histogram and scan: `details.json`.",
        "",
    ]
    return "\n".join(lines)
