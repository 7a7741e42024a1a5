"""``gmmpyro report`` end to end on a tiny model, and its input checks."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import gmmpyro
from gmmpyro.cli import add_report_command, main
from gmmpyro.report import ReportConfig, load_events, write_report
from gmmpyro.report.context import ReportContext
from gmmpyro.toy import ToyModel
from gmmpyro.validation import ClassifierConfig

GRID = [[cx, cy] for cx in (-1.5, 0.0, 1.5) for cy in (-1.5, 0.0, 1.5)]
SMALL = ReportConfig(
    model_samples=6000,
    bins=20,
    bins_2d=8,
    c2st_events=1000,
    c2st_folds=3,
    classifier=ClassifierConfig(epochs=5),
    kl_events=3000,
    reweight_events=4000,
    pseudo_points=1,
    grid_points=11,
    dpi=40,
)
FIGURES = {
    "marginals_data", "marginals_latent", "pairs_reference", "pairs_model", "pairs_pull", "dependence_x0",
    "dependence_x1", "dependence_x2", "dependence_x3", "mixture", "training", "inference",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model trained for 2 epochs on a 3 × 3 toy grid, saved; and its reference events."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(300, grid=GRID, seed=0)
    config = gmmpyro.NetworkConfig(n_gauss=4, A1=8, B1=8, B2=2, C=1, D=1)
    model = gmmpyro.DensityModel(toy.observables, ["cx", "cy"], config=config)
    model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=2), progress=False)
    folder = tmp_path_factory.mktemp("tiny")
    model.save(folder / "tiny.gmm")
    np.savez(folder / "events.npz", x=x.numpy(), theta=theta.numpy())
    return model, x, theta, folder


def _strict_json(path):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_write_report_end_to_end(tiny, tmp_path):
    model, x, theta, _ = tiny
    result = write_report(model, x, theta, truth=ToyModel(), out_dir=tmp_path / "r", progress=False, config=SMALL)
    assert {p.stem for p in result.figures} == FIGURES
    assert all(p.is_file() and p.stat().st_size > 1000 for p in result.figures)
    summary = _strict_json(result.summary_json)
    assert summary["verdict"] == result.verdict in ("PASS", "WARN", "FAIL")
    assert list(summary["verdicts"])[:3] == ["kl_gap", "c2st", "inference"]  # headline numbers first
    assert summary["metrics"]["kl_gap"]["kl_gap"] > 0 and 0 <= summary["metrics"]["c2st"]["auc"] <= 1
    assert summary["thresholds"]["iou_pass"] == 0.85
    _strict_json(result.out_dir / "details.json")
    text = result.summary_md.read_text()
    assert text.startswith(f"# gmmpyro model report — **{result.verdict}**")
    assert "| kl_gap | **" in text and "PASS ≤ 0.01" in text and "![pairs_pull](pairs_pull.png)" in text
    # only gmmpyro's own warnings (e.g. fits of this 2-epoch model that do not converge) are collected
    own = ("ConvergenceWarning", "OutOfRangeWarning", "GmmpyroWarning")
    assert all(w.split(":")[0] in own for w in result.warnings), result.warnings
    assert repr(result).startswith(f"ReportResult: {result.verdict} — {result.out_dir} (12 figures")
    assert f"  {summary['verdicts']['kl_gap']['verdict']}  kl_gap: KL(truth" in repr(result)
    assert result.verdict in result._repr_html_()
    exported = json.loads(json.dumps(result.to_dict()))  # plain JSON, paths as strings
    assert exported["verdict"] == result.verdict and exported["out_dir"] == str(result.out_dir)
    with pytest.raises(AttributeError):
        result.verdict = "PASS"  # read-only


def test_report_input_errors(tiny, tmp_path):
    model, x, theta, _ = tiny
    with pytest.raises(ValueError, match="reference_theta must have shape"):
        write_report(model, x, theta[:5], out_dir=tmp_path, progress=False, config=SMALL)
    with pytest.raises(ValueError, match="the truth has observables"):
        write_report(model, x, theta, truth=ToyModel(x3_shift=0.1), out_dir=tmp_path, progress=False)
    bad = x.clone()
    bad[0, 2] = 5.0
    with pytest.raises(ValueError, match="observable 'x2'"):
        write_report(model, bad, theta, out_dir=tmp_path, progress=False)
    untrained = gmmpyro.DensityModel(ToyModel().observables, ["cx", "cy"])
    with pytest.raises(ValueError, match="not trained"):
        write_report(untrained, x, theta, out_dir=tmp_path, progress=False)


def test_add_report_command_to_any_parser():
    parser = argparse.ArgumentParser(prog="tool")
    add_report_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", "m.gmm", "--reference", "e.npz", "--out", "o", "--truth", "toy"])
    assert (args.model, args.reference, args.truth, args.out, args.quick) == ("m.gmm", "e.npz", "toy", "o", False)
    assert callable(args.run)


def test_cli_end_to_end(tiny, tmp_path, capsys):
    """The command on a CSV of observables only (no θ, no truth): the θ assumption is stated; the
    model, drawn at the centre against events from the whole grid, FAILs: exit status 1, and the
    weak --quick classifier test is reported but not graded."""
    model, x, _, folder = tiny
    names = [o.name for o in model.observables]
    np.savetxt(tmp_path / "ev.csv", x[::3].numpy(), delimiter=",", header=",".join(names), comments="")
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(folder / "tiny.gmm"), "--reference", str(tmp_path / "ev.csv"), "--out", str(out),
              "--quick", "--quiet"])  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith(f"FAIL: report written to {out / 'summary.md'}\n  FAIL: ")  # the verdict first
    assert exit_info.value.code == 1 and printed.rstrip().endswith("exit status 1: the verdict is FAIL")
    assert "  INFO  c2st: classifier AUC = " in printed
    summary = _strict_json(out / "summary.json")
    assert summary["verdict"] == "FAIL"
    c2st = summary["verdicts"]["c2st"]
    assert c2st["verdict"] == "INFO" and "not graded, information only: too few events/epochs" in c2st["line"]
    text = (out / "summary.md").read_text()
    assert text.startswith("# gmmpyro model report — **FAIL**\n\nFAIL: ") and "| c2st | **INFO** |" in text
    assert summary["verdicts"]["kl_gap"]["verdict"] == summary["verdicts"]["inference"]["verdict"] == "SKIP"
    assert "kl_gap" not in summary["metrics"]
    assert "assumed the centre of the training range" in summary["inputs"]["reference_theta"]
    assert {f.removesuffix(".png") for f in summary["figures"]} == FIGURES - {"inference"}
    assert (out / "summary.md").is_file() and (out / "pairs_pull.png").is_file()


def test_cli_rejects_bad_files(tiny, tmp_path, capsys):
    _, x, _, folder = tiny
    np.savez(tmp_path / "nox.npz", events=x.numpy())
    cases = [
        (str(tmp_path / "missing.gmm"), str(folder / "events.npz"), "not a readable gmmpyro model"),
        (str(folder / "tiny.gmm"), str(tmp_path / "nox.npz"), "no column(s) ['x0', 'x1', 'x2', 'x3']"),
        (str(folder / "tiny.gmm"), str(tmp_path / "none.npz"), "no such file"),
    ]
    for model_path, events, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["report", model_path, "--reference", events, "--out", str(tmp_path / "o")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_load_events_npz_and_csv(tiny, tmp_path):
    model, x, theta, folder = tiny
    names = [o.name for o in model.observables]
    x_npz, theta_npz = load_events(folder / "events.npz", model.observables, model.params)
    assert torch.equal(x_npz, x) and torch.equal(theta_npz, theta)
    header = ",".join(["cy", *names[::-1], "cx"])  # any column order
    rows = np.column_stack([theta[:, 1].numpy(), x.flip(1).numpy(), theta[:, 0].numpy()])
    np.savetxt(tmp_path / "ev.csv", rows, delimiter=",", header=header, comments="")
    x_csv, theta_csv = load_events(tmp_path / "ev.csv", model.observables, model.params)
    torch.testing.assert_close(x_csv, x)
    torch.testing.assert_close(theta_csv, theta)
    np.savetxt(tmp_path / "obs.csv", x.numpy(), delimiter=",", header=",".join(names), comments="")
    assert load_events(tmp_path / "obs.csv", model.observables, model.params)[1] is None
    columns = {n: x[:, j].numpy() for j, n in enumerate(names)} | {"cx": theta[:, 0].numpy(), "cy": theta[:, 1].numpy()}
    np.savez(tmp_path / "columns.npz", **columns)  # the layout `gmmpyro train` reads
    x_col, theta_col = load_events(tmp_path / "columns.npz", model.observables, model.params)
    assert torch.equal(x_col, x) and torch.equal(theta_col, theta)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("x0,x1,x2\n1,2,3\n"), r"no column\(s\) \['x3'\]"),
        (
            lambda p: p.write_text("x0,x1,x2,x3,cx\n300,300,0,0,0\n"),
            r"parameter column\(s\) \['cy'\] missing",
        ),
        (lambda p: p.write_text("x0,x1,x2,x3\n300,300,zero,0\n"), "cannot read a number for every column"),
        (lambda p: p.write_text("x0,x1,x2,x3\n900,300,0,0\n"), "observable 'x0' lie outside its bounds"),
    ],
)
def test_load_events_errors_name_the_problem(tiny, tmp_path, write, message):
    model = tiny[0]
    path = tmp_path / "bad.csv"
    write(path)
    with pytest.raises(ValueError, match=message):
        load_events(path, model.observables, model.params)
    (tmp_path / "ev.txt").write_text("")
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'"):
        load_events(tmp_path / "ev.txt", model.observables, model.params)
    np.savez(tmp_path / "shape.npz", x=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"array 'x' has 2 columns but 4 names"):
        load_events(tmp_path / "shape.npz", model.observables, model.params)


@pytest.fixture
def no_png(monkeypatch):
    """The report makes its figures but writes no PNG files (the end-to-end test does): faster."""
    import matplotlib.pyplot as plt

    def save(self, fig, name):
        plt.close(fig)
        self.figures.append(self.out / f"{name}.png")

    monkeypatch.setattr(ReportContext, "save", save)


def _spy_on_mixture(monkeypatch) -> list:
    """Record the θ points of every mixture figure the report draws."""
    import gmmpyro.plotting

    drawn, plot_mixture = [], gmmpyro.plotting.plot_mixture

    def spy(model, observable, thetas, **kwargs):
        drawn.append(np.asarray(thetas))
        return plot_mixture(model, observable, thetas, **kwargs)

    monkeypatch.setattr(gmmpyro.plotting, "plot_mixture", spy)
    return drawn


def test_one_theta_reference_keeps_the_figures_theta_points_apart(tiny, tmp_path, monkeypatch, no_png):
    """Reference events at one θ: the dependence and mixture figures still span the training range
    (snapping onto the reference's one value made every ratio p(x|θ_ref)/p(x|θ_ref) = 1)."""
    model = tiny[0]
    at = torch.tensor([0.5, -0.5])
    x_ref = ToyModel().sample(1500, at, seed=3)
    drawn = _spy_on_mixture(monkeypatch)
    config = replace(SMALL, c2st_events=0, pseudo_points=0, model_samples=1500, reweight_events=1500)
    write_report(model, x_ref, at, truth=ToyModel(), out_dir=tmp_path, progress=False, config=config)
    details = _strict_json(tmp_path / "details.json")["dependence_model"]  # the θ points
    assert details["theta_ref"] == at.tolist()  # the reference events' own θ
    thetas = np.array(details["thetas"])
    assert len(np.unique(thetas, axis=0)) == 9 and np.ptp(thetas, axis=0).min() > 1.5  # a 3 × 3 grid
    assert "dependence_simulated" not in _strict_json(tmp_path / "details.json")  # nothing simulated to compare
    assert len(drawn) == 1 and len(np.unique(drawn[0], axis=0)) == 3  # the mixture at three distinct θ
    np.testing.assert_array_equal(drawn[0][0], at.numpy())  # the first at the reference


def test_snap_moves_points_only_along_parameters_the_reference_varies(tiny, tmp_path):
    model, x, _, _ = tiny
    theta = torch.tensor([[-1.5, 0.5], [1.5, 0.5]]).repeat_interleave(len(x) // 2, 0)
    ctx = ReportContext.build(model, x[: len(theta)], theta, truth=None, out_dir=tmp_path, seed=0, config=SMALL)
    assert ctx.shared.tolist() == [False, True] and ctx.reference_point.tolist() == [0.0, 0.5]
    snapped = ctx.snap(np.array([[-1.0, -1.0], [-0.9, 1.0], [1.0, 0.0]]))
    np.testing.assert_array_equal(snapped, [[-1.5, -1.0], [-1.5, 1.0], [1.5, 0.0]])  # cy left alone
    assert len(ctx.snap(np.array([[-1.0, 0.2], [-1.2, 0.2]]))) == 1  # points that meet are merged


@pytest.fixture(scope="module")
def nuisance():
    """A tiny model of (cx, cy, nu), nu shifting x3 (ToyModel(x3_shift=0.3)), trained for one epoch."""
    toy = ToyModel(x3_shift=0.3)
    grid = [[cx, cy, nu] for cx, cy in GRID for nu in (-1.0, 1.0)]
    x, theta = toy.grid_dataset(100, grid=grid, seed=0)
    config = gmmpyro.NetworkConfig(n_gauss=2, A1=4, B1=4, B2=2, C=1, D=1)
    model = gmmpyro.DensityModel(toy.observables, list(toy.params), config=config)
    model.fit(x, theta, config=gmmpyro.TrainingConfig(max_epochs=1, seed=0), progress=False)
    return toy, model


@pytest.mark.filterwarnings("ignore::gmmpyro.exceptions.GmmpyroWarning")  # a one-epoch model fits poorly
@pytest.mark.parametrize("how", ["profile", "fix"])
def test_three_parameters_scan_two_and_profile_or_fix_the_third(how, nuisance, tmp_path, monkeypatch, no_png):
    toy, model = nuisance
    points = [[cx, cy, 0.5] for cx, cy in ([-1.0, 0.0], [1.0, 0.0], [0.0, 1.0])]  # every event at nu = 0.5
    x_ref, theta_ref = toy.grid_dataset(400, grid=points, seed=1)
    drawn = _spy_on_mixture(monkeypatch)
    config = ReportConfig(
        model_samples=1200, bins=10, bins_2d=4, c2st_events=0, kl_events=600, reweight_events=600,
        pseudo_points=1, pseudo_events=150, grid_points=5, dpi=20, nuisance=how,
    )  # fmt: skip
    result = write_report(model, x_ref, theta_ref, truth=toy, out_dir=tmp_path, progress=False, config=config)
    verdict, line = result.verdicts["inference"]
    words = "profiled" if how == "profile" else "fixed at the truth"
    assert verdict != "SKIP" and f"inference (cx, cy scanned; nu {words}, true nu = 0.5)" in line
    inference = _strict_json(tmp_path / "details.json")["inference"]
    assert inference["params"] == ["cx", "cy"]
    assert (inference["profiled"], inference["fixed"]) == ((["nu"], []) if how == "profile" else ([], ["nu"]))
    assert inference["truths"] == [[0.0, 0.0]]
    assert "inference.png" in [p.name for p in result.figures]
    dependence = _strict_json(tmp_path / "details.json")["dependence_model"]
    assert dependence["theta_ref"][2] == 0.5  # the shared nu; cx, cy at the reference's values nearest the centre
    assert len(np.unique(np.array(dependence["thetas"]), axis=0)) >= 5  # nu moved away from 0.5, not snapped back
    assert len(drawn) == 1 and len(np.unique(drawn[0], axis=0)) == 3
