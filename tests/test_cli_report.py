"""``gmmpyro report``'s exit status: 1 on FAIL (and on WARN with ``--strict``), so scripts and CI can use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gmmpyro
import gmmpyro.report
from gmmpyro.cli import build_parser, main
from gmmpyro.report import ReportResult
from gmmpyro.toy import ToyModel

GRID = [[cx, cy] for cx in (-1.5, 0.0, 1.5) for cy in (-1.5, 0.0, 1.5)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A model trained for one epoch on a small toy grid, saved, and its training events."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(100, grid=GRID, seed=0)
    config = gmmpyro.NetworkConfig(n_gauss=2, A1=4, B1=4, B2=2, C=1, D=1)
    model = gmmpyro.DensityModel(toy.observables, ["cx", "cy"], config=config)
    model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=1, seed=0), progress=False)
    folder = tmp_path_factory.mktemp("cli_report")
    model.save(folder / "m.gmm")
    np.savez(folder / "events.npz", x=x.numpy(), theta=theta.numpy())
    return folder


def _argv(folder, out, *options) -> list[str]:
    files = ["report", str(folder / "m.gmm"), "--reference", str(folder / "events.npz"), "--out", str(out)]
    return [*files, "--quiet", *options]


def _main(argv) -> int:
    """The exit status of ``gmmpyro ARGV`` (:func:`gmmpyro.cli.main` exits only on failure)."""
    try:
        main(argv)
    except SystemExit as exit_info:
        return exit_info.code
    return 0


@pytest.mark.parametrize(
    ("verdict", "strict", "status"),
    [
        ("PASS", False, 0),
        ("SKIP", False, 0),
        ("WARN", False, 0),
        ("FAIL", False, 1),
        ("PASS", True, 0),
        ("SKIP", True, 0),
        ("WARN", True, 1),
        ("FAIL", True, 1),
    ],
)
def test_exit_status_follows_the_verdict(files, tmp_path, monkeypatch, capsys, verdict, strict, status):
    verdicts = {"c2st": ("INFO", "classifier AUC = 0.49 — not graded"), "pairs": (verdict, "2-D pull maps: ...")}

    def fake_report(model, x, theta, *, out_dir, **kwargs):
        return ReportResult(Path(out_dir), verdict, verdicts, {}, (), (), 0.0)

    monkeypatch.setattr(gmmpyro.report, "write_report", fake_report)
    argv = _argv(files, tmp_path / "r", *(["--strict"] if strict else []))
    args = build_parser().parse_args(argv)
    assert args.run(args) == status  # run_report returns it
    capsys.readouterr()
    assert _main(argv) == status  # and the command exits with it
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{verdict}: report written to {tmp_path / 'r' / 'summary.md'}"  # the verdict first
    groups = {"PASS": "PASS: pairs; not graded: c2st", "SKIP": "not graded: c2st; not run: pairs"}
    assert printed[1] == "  " + groups.get(verdict, f"{verdict}: pairs; not graded: c2st")  # worst first
    assert ("exit status 1" in printed[-1]) == bool(status)
