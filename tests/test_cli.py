import importlib
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gmmpyro import DensityModel
from gmmpyro.cli import demo, main, parse_observable, parse_prior
from gmmpyro.cli.demo import DemoSettings, run_demo
from gmmpyro.datafiles import read_columns, write_columns
from gmmpyro.report import ReportConfig
from gmmpyro.toy import ToyModel

TINY_REPORT = ReportConfig(
    model_samples=1000, c2st_events=0, kl_events=1000, reweight_events=1000, pseudo_points=0, bins=8, bins_2d=4, dpi=30
)
TINY_DEMO = DemoSettings(
    per_point=40,
    nu_values=(-1.0, 0.0, 1.0),
    max_epochs=1,
    n_events=60,
    warmup=10,
    draws=10,
    chains=2,
    scan_points=5,
    validation_per_point=40,
    report=TINY_REPORT,
)


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    toy = ToyModel()
    x, theta = toy.grid_dataset(60, grid=[[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]], seed=0)
    columns = {f"x{i}": x[:, i].numpy() for i in range(4)} | {"cx": theta[:, 0].numpy(), "cy": theta[:, 1].numpy()}
    write_columns(folder / "train.csv", columns)
    np.savez(folder / "train.npz", x=x.numpy(), theta=theta.numpy())
    write_columns(folder / "observed.npz", {f"x{i}": v for i, v in enumerate(toy.sample(50, [0.5, 0.5], seed=1).T)})
    return folder


@pytest.mark.parametrize("command", ["demo", "train", "sample", "infer", "report"])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: gmmpyro " + command in capsys.readouterr().out


@pytest.mark.parametrize("package", ["gmmpyro", "gmmpyro.cli"])
def test_python_m_runs_the_command(package, monkeypatch, capsys):
    # what `python -m <package>` does: run <package>/__main__.py as __main__ inside its package
    path = Path(importlib.import_module(package).__file__).with_name("__main__.py")
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__", "__package__": package})
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: gmmpyro [-h] [--version] {demo,train,sample,infer,report}")


def test_parsers():
    assert parse_observable("n:0:4:discrete").discrete
    assert parse_observable("eta").bounds is None
    assert parse_prior("nu=normal:0:1")[1].scale == 1.0
    with pytest.raises(Exception, match="use name, name:lo:hi"):
        parse_observable("a:1")
    with pytest.raises(Exception, match="name=uniform:lo:hi"):
        parse_prior("cx=beta:1:2")


# a one-epoch model may fit or scan poorly; this test is about the command-line plumbing
@pytest.mark.filterwarnings("ignore::gmmpyro.exceptions.GmmpyroWarning")
def test_train_sample_infer_round_trip(toy_files, tmp_path):
    spec = ["x0:100:800", "x1:100:800", "x2:-3.1416:3.1416", "x3"]
    for source in ("train.csv", "train.npz"):
        main(
            [
                "train",
                str(toy_files / source),
                "--observables",
                *spec,
                "--params",
                "cx",
                "cy",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "m.gmm"),
                "--quiet",
                "--seed",
                "0",
            ]
        )
    assert not (tmp_path / "m.gmm.checkpoint").exists()  # the run's checkpoint goes once the model is saved
    main(
        [
            "sample",
            str(tmp_path / "m.gmm"),
            "--theta",
            "cx=0.2",
            "cy=-0.1",
            "-n",
            "30",
            "--seed",
            "2",
            "--out",
            str(tmp_path / "s.csv"),
        ]
    )
    sample = read_columns(tmp_path / "s.csv")
    assert sorted(sample) == ["x0", "x1", "x2", "x3"] and len(sample["x0"]) == 30
    main(
        [
            "infer",
            str(tmp_path / "m.gmm"),
            "--events",
            str(toy_files / "observed.npz"),
            "--scan",
            "cx=-1:1:5",
            "cy=-1:1:5",
            "--out",
            str(tmp_path / "inf"),
        ]
    )
    scan = json.loads((tmp_path / "inf" / "scan.json").read_text())
    assert np.asarray(scan["q"]).shape == (5, 5)


def test_quiet_sampler_choice_and_version(toy_files, tmp_path, capsys):
    import arviz as az

    from gmmpyro.exceptions import ConvergenceWarning

    model = tmp_path / "m.gmm"
    main(["train", str(toy_files / "train.npz"), "--observables", "x0:100:800", "x1:100:800", "x2:-3.1416:3.1416",
          "x3", "--params", "cx", "cy", "--epochs", "1", "--out", str(model), "--quiet"])  # fmt: skip
    capsys.readouterr()
    main(["sample", str(model), "--theta", "cx=0.2", "cy=-0.1", "-n", "5", "--out", str(tmp_path / "s.npz"), "--quiet"])
    assert capsys.readouterr().out == ""
    with warnings.catch_warnings():
        warnings.simplefilter("default", ConvergenceWarning)  # shown, as outside the test suite
        main(["infer", str(model), "--events", str(toy_files / "observed.npz"), "--prior", "cx=uniform:-1:1",
              "cy=uniform:-1:1", "--sampler", "batched", "--chains", "4", "--warmup", "20", "--draws", "20",
              "--quiet", "--out", str(tmp_path / "inf")])  # fmt: skip
    err = capsys.readouterr().err
    assert "it/s" not in err  # no progress bar
    # 4 chains of 20 draws do not converge: the warning is one line naming the command, not a source line
    assert re.search(r"^gmmpyro infer: warning: .*R-hat.* \(ConvergenceWarning\)$", err, re.MULTILINE)
    posterior = az.from_netcdf(str(tmp_path / "inf" / "posterior.nc"))["posterior"]
    assert posterior.attrs["sampler"] == "ChEES-HMC" and posterior["cx"].shape == (4, 20)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("gmmpyro ")


def test_train_an_ensemble(toy_files, tmp_path):
    model = tmp_path / "m.gmm"
    main(["train", str(toy_files / "train.npz"), "--observables", "x0:100:800", "x1:100:800", "x2:-pi:pi",
          "x3", "--params", "cx", "cy", "--epochs", "1", "--ensemble", "2", "--out", str(model),
          "--quiet"])  # fmt: skip
    loaded = DensityModel.load(model)
    assert loaded.ensemble == 2 and len(loaded.history.names) == 8


@pytest.fixture(scope="module")
def one_epoch_model(toy_files, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "m.gmm"
    main(["train", str(toy_files / "train.npz"), "--observables", "x0:100:800", "x1:100:800", "x2:-pi:pi",
          "x3", "--params", "cx", "cy", "--epochs", "1", "--out", str(model), "--quiet"])  # fmt: skip
    return model


# a one-epoch model may fit or scan poorly; this test is about what infer prints and writes
@pytest.mark.filterwarnings("ignore::gmmpyro.exceptions.GmmpyroWarning")
def test_infer_prints_the_results_table_and_draws_the_figure(one_epoch_model, toy_files, tmp_path, capsys):
    import arviz as az

    from gmmpyro.cli.results import result_rows, text_table

    out = tmp_path / "inf"
    capsys.readouterr()
    main(["infer", str(one_epoch_model), "--events", str(toy_files / "observed.npz"), "--scan", "cx=5", "cy=5",
          "--prior", "cx=uniform:-1:1", "cy=uniform:-1:1", "--chains", "2", "--warmup", "10", "--draws", "10",
          "--quiet", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert "it/s" not in printed.err  # --quiet: no progress bar
    lines = printed.out.splitlines()
    headers = ["parameter", "MLE", "profile 68 %", "profile 95 %", "posterior mean", "HDI 68 %", "HDI 95 %", "R-hat"]
    assert re.split(r"\s\s+", lines[0]) == [*headers, "bulk ESS"]
    assert [line.split()[0] for line in lines[1:3]] == ["cx", "cy"]
    # the posterior columns are those of the stored draws; the MLE that of the stored scan
    idata = az.from_netcdf(str(out / "posterior.nc"))
    expected = text_table(result_rows(["cx", "cy"], idata=idata)).splitlines()
    for line, posterior_only in zip(lines[1:3], expected[1:], strict=True):
        assert line.endswith(posterior_only.split(maxsplit=1)[1].strip())
    mle = json.loads((out / "scan.json").read_text())["mle"]["values"]
    assert [float(line.split()[1]) for line in lines[1:3]] == [round(mle["cx"], 3), round(mle["cy"], 3)]
    summary = (out / "summary.md").read_text()
    assert "| parameter | MLE | profile 68 % |" in summary and "posterior_vs_profile.png" in summary
    assert (out / "posterior_vs_profile.png").stat().st_size > 10_000
    assert "written to" in lines[-1] and "summary.md" in lines[-1]

    main(["infer", str(one_epoch_model), "--events", str(toy_files / "observed.npz"), "--scan", "cx=-1:1:5",
          "--out", str(tmp_path / "scan_only")])  # fmt: skip
    assert re.split(r"\s\s+", capsys.readouterr().out.splitlines()[0]) == headers[:4]
    assert (tmp_path / "scan_only" / "profile.png").exists()


def test_bad_files_and_columns_give_clear_errors(toy_files, tmp_path):
    with pytest.raises(SystemExit, match=r"no column\(s\) \['x9'\]"):
        main(
            [
                "train",
                str(toy_files / "train.csv"),
                "--observables",
                "x9",
                "--params",
                "cx",
                "--out",
                str(tmp_path / "m.gmm"),
            ]
        )
    (tmp_path / "x.txt").write_text("x0\n1\n")
    with pytest.raises(SystemExit, match=r"unsupported file type '\.txt'"):
        main(["train", str(tmp_path / "x.txt"), "--observables", "x0", "--params", "cx", "--out", "m.gmm"])
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="cannot read events"):
        main(["train", str(tmp_path / "broken.npz"), "--observables", "x0", "--params", "cx", "--out", "m.gmm"])
    with pytest.raises(SystemExit, match="give --prior"):
        main(["infer", "model.gmm", "--events", str(toy_files / "observed.npz")])


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("# m,pt\n1,2\n3,4\n", {"m": [1.0, 3.0], "pt": [2.0, 4.0]}),  # np.savetxt's header
        ("\ufeffm,pt\n1,2\n", {"m": [1.0], "pt": [2.0]}),  # byte-order mark (spreadsheets)
        ('"m","pt"\n"1","2"\n3,4\n', {"m": [1.0, 3.0], "pt": [2.0, 4.0]}),  # quoted names and values
    ],
)
def test_csv_variants_are_read(tmp_path, text, columns):
    path = tmp_path / "events.csv"
    path.write_text(text, encoding="utf-8")
    assert {name: values.tolist() for name, values in read_columns(path).items()} == columns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m,m\n1,2\n", r"repeated column name\(s\) \['m'\]"),
        ("m,pt\n", "no events below the header"),
        ("m,pt\n1,zero\n", "cannot read a number for every column"),
        ("m,pt\n1,2,3\n", "3 values per line but 2 column names"),
        ("", "the first line must name every column"),
    ],
)
def test_bad_csv_files_are_named(tmp_path, text, message):
    path = tmp_path / "events.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_columns(path)


@pytest.mark.filterwarnings("ignore::gmmpyro.exceptions.GmmpyroWarning")
def test_demo_runs_end_to_end_and_reproduces(tmp_path):
    import arviz as az

    summary = run_demo(tmp_path, settings=TINY_DEMO, seed=3, progress=False)
    for name in (
        "model.gmm",
        "observed.npz",
        "posterior.nc",
        "scan.json",
        "posterior_vs_profile.png",
        "summary.md",
        "summary.json",
        "validation/summary.md",
    ):
        assert (tmp_path / name).exists(), name
    assert summary["truth"] == {"cx": 0.8, "cy": -0.8, "nu": 0.5}
    assert json.loads((tmp_path / "summary.json").read_text())["mle"] == summary["mle"]
    assert summary["validation"]["verdict"] in ("PASS", "WARN", "FAIL")
    posterior = az.from_netcdf(str(tmp_path / "posterior.nc")).posterior
    assert {n: float(np.asarray(posterior[n]).mean()) for n in summary["truth"]} == {
        n: p["mean"] for n, p in summary["posterior"].items()
    }

    # The same seed again, step by step instead of a second demo: the training set, the trained
    # weights and the pseudo-data are identical; the chains ran with the demo's seed (seeded
    # chains reproduce: tests/test_bayes.py); fit and scan have no randomness of their own.
    toy, x, theta, score = demo._simulate(TINY_DEMO, seed=3)
    retrained = demo._train(toy, x, theta, score, TINY_DEMO, device=None, seed=3, progress=False)
    saved = DensityModel.load(tmp_path / "model.gmm")
    for (name, value), saved_value in zip(retrained.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(value, saved_value), name
    x_obs = demo._observe(toy, TINY_DEMO, seed=3)
    np.testing.assert_array_equal(np.load(tmp_path / "observed.npz")["x"], x_obs.numpy())
    truth = torch.tensor(list(summary["truth"].values()))
    assert torch.equal(retrained.log_prob(x_obs, truth), saved.log_prob(x_obs, truth))
    assert int(posterior.attrs["seed"]) == 3
