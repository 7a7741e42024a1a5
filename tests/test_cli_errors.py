"""Bad command lines end with one clear line and an exit status; an interrupted training keeps its work."""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from gmmpyro import DensityModel
from gmmpyro.cli import main
from gmmpyro.cli.errors import run_command
from gmmpyro.toy import ToyModel
from tests.helpers import DATA

TINY_CONFIG = """
params = ["cx", "cy"]
[[observables]]
name = "x0"
bounds = [100, 800]
[[observables]]
name = "x1"
bounds = [100, 800]
[[observables]]
name = "x2"
bounds = [-3.1416, 3.1416]
[[observables]]
name = "x3"
[network]
n_gauss = 4
A1 = 8
B1 = 8
B2 = 2
[training]
max_epochs = 2
"""
TRAIN = ["--config", "{tmp}/tiny.toml", "--quiet"]
MODEL = str(DATA / "toy_small_v1.gmm")
SAMPLE = ["sample", MODEL, "--theta", "cx=0", "cy=0", "-n", "5"]
INFER = ["infer", MODEL, "--scan", "cx=-1:1:3"]


@pytest.fixture
def files(tmp_path):
    """A folder with tiny training events, a tiny configuration, damaged event files and a plain file."""
    grid = [[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]]
    x, theta = ToyModel().grid_dataset(40, grid=grid, seed=0)
    np.savez(tmp_path / "events.npz", x=x.numpy(), theta=theta.numpy())
    (tmp_path / "tiny.toml").write_text(TINY_CONFIG)
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "file").write_text("a file, not a folder")
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``(exit status, standard error)`` of ``gmmpyro ARGV`` run in this process."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code, err = exit_info.value.code, capsys.readouterr().err
    if isinstance(code, str):  # the interpreter prints the message on standard error and exits with 1
        return 1, code + "\n"
    return code, err


def with_config(files, old: str, new: str) -> str:
    """Write ``TINY_CONFIG`` with ``old`` replaced by ``new`` to ``bad.toml``; return its path."""
    assert old in TINY_CONFIG
    (files / "bad.toml").write_text(TINY_CONFIG.replace(old, new))
    return str(files / "bad.toml")


def no_training(monkeypatch) -> None:
    monkeypatch.setattr(DensityModel, "fit", lambda *a, **k: pytest.fail("training started"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(["--out", "{tmp}/no/m.gmm"], "cannot write {tmp}/no/m.gmm: the folder {tmp}/no does not exist",
                     id="out-folder-missing"),
        pytest.param(["--out", "{tmp}"], "cannot write {tmp}: it is a folder", id="out-is-a-folder"),
        pytest.param(["--out", "{tmp}/file/m.gmm"], "the folder {tmp}/file is not a folder", id="out-under-a-file"),
        pytest.param(["--out", "m.gmm", "--checkpoint-dir", "{tmp}/file/c"], "{tmp}/file is not a folder",
                     id="checkpoint-under-a-file"),
        pytest.param(["--out", "m.gmm", "--reference", "cx=0"], "unknown [], missing ['cy']", id="reference"),
        pytest.param(["--out", "m.gmm", "--epochs", "0"], "max_epochs", id="zero-epochs"),
        pytest.param(["--out", "m.gmm", "--ensemble", "0"], "--ensemble must be >= 1", id="zero-members"),
        pytest.param(["--out", "m.gmm", "--config", "{tmp}/no.toml"], "{tmp}/no.toml: No such file or directory",
                     id="config-missing"),
    ],
)  # fmt: skip
def test_train_checks_before_any_work(options, message, files, capsys, monkeypatch):
    no_training(monkeypatch)
    argv = ["train", "{tmp}/events.npz", *TRAIN, *options]
    code, err = run_cli([a.format(tmp=files) for a in argv], capsys)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("gmmpyro train: ") and message.format(tmp=files) in err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_epochs = 2", "max_epoch = 2",
         "[training]: unknown key 'max_epoch' (did you mean 'max_epochs'?); allowed keys: batch_size, bootstrap, "
         "joint, "),
        ("n_gauss = 4", "ngauss = 4", "[network]: unknown key 'ngauss' (did you mean 'n_gauss'?); allowed keys: A1, "),
        ('name = "x3"', 'name = "x3"\nbound = [0, 1]',
         "[[observables]] #4: unknown key 'bound' (did you mean 'bounds'?); allowed keys: bounds, discrete, f, name"),
        ('name = "x3"', "bounds = [0, 1]", "[[observables]] #4: needs a name"),
        ('name = "x3"', 'name = "x3"\nbounds = [1, 0]', "[[observables]] #4: observable 'x3': bounds must be finite"),
        ("params =", "paramz =",
         "top level: unknown key 'paramz' (did you mean 'params'?); allowed keys: ensemble, network, "),
        ("params = [", 'reference = {cx = "0"}\nparams = [', "reference cx must be a number, got '0'"),
        ('params = ["cx", "cy"]', 'params = "cx"', "params must be a list of names, got 'cx'"),
        ("max_epochs = 2", "max_epochs = '2'", "[training]: max_epochs must be an integer, got '2'"),
        ("max_epochs = 2", "max_epochs = true", "[training]: max_epochs must be an integer, got True"),
        ("max_epochs = 2", "learning_rate = -1", "[training]: "),  # the message of TrainingConfig follows
        ("max_epochs = 2", "max_epochs = = 2", "not a valid TOML file"),
        ("params =", "ensemble = 0\nparams =", "ensemble must be an integer >= 1 (the number of members), got 0"),
    ],
    ids=["training-key", "network-key", "observable-key", "observable-name", "observable-bounds", "top-level-key",
         "reference-type", "params-type", "str-for-int", "bool-for-int", "training-value", "toml-syntax",
         "ensemble"],
)  # fmt: skip
def test_config_errors_name_file_section_and_key(old, new, message, files, capsys, monkeypatch):
    no_training(monkeypatch)
    path = with_config(files, old, new)
    argv = ["train", f"{files}/events.npz", "--config", path, "--out", f"{files}/m.gmm", "--checkpoint-dir", "c"]
    code, err = run_cli(argv, capsys)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"gmmpyro train: {path}: ") and message in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        pytest.param(["train", "{tmp}/zip.npz", *TRAIN, "--out", "m.gmm"], 1,
                     "{tmp}/zip.npz: cannot read events: not a valid .npz archive", id="damaged-npz"),
        pytest.param(["train", "{tmp}/empty.npz", *TRAIN, "--out", "m.gmm"], 1, "{tmp}/empty.npz: cannot read events",
                     id="empty-npz"),
        pytest.param(["train", "{tmp}/no.npz", *TRAIN, "--out", "m.gmm"], 1, "{tmp}/no.npz: no such file",
                     id="missing-events"),
        pytest.param(["train", "e.npz", *TRAIN, "--out", "m.gmm", "--device", "gpu"], 2,
                     "argument --device: 'gpu' is not a torch device", id="device-name"),
        pytest.param(["train", "e.npz", *TRAIN, "--out", "m.gmm", "--device", "cuda:x"], 2,
                     "argument --device: 'cuda:x' is not a torch device", id="device-index"),
        pytest.param([*SAMPLE, "--out", "{tmp}/s.txt"], 1, "cannot write {tmp}/s.txt: unsupported file type '.txt'",
                     id="sample-suffix"),
        pytest.param([*SAMPLE, "--out", "{tmp}/no/s.npz"], 1, "the folder {tmp}/no does not exist", id="sample-out"),
        pytest.param(["sample", "{tmp}/no.gmm", "--theta", "cx=0", "-n", "5", "--out", "{tmp}/s.npz"], 1,
                     "{tmp}/no.gmm", id="sample-model"),
        pytest.param([*SAMPLE, "--out", "s.npz", "--device", "cuda:0:1"], 2, "argument --device", id="sample-device"),
        pytest.param([*INFER, "--events", "{tmp}/zip.npz", "--out", "{tmp}/i"], 1,
                     "{tmp}/zip.npz: cannot read events", id="infer-events"),
        pytest.param([*INFER, "--events", "{tmp}/events.npz", "--out", "{tmp}/file/i"], 1,
                     "cannot write into {tmp}/file/i: {tmp}/file is not a folder", id="infer-out"),
        pytest.param([*INFER, "--events", "e.npz", "--device", "tpu"], 2, "'tpu' is not a torch device",
                     id="infer-device"),
        pytest.param(["report", MODEL, "--reference", "{tmp}/empty.npz", "--out", "{tmp}/r"], 2,
                     "{tmp}/empty.npz: cannot read events", id="report-events"),
        pytest.param(["report", MODEL, "--reference", "{tmp}/events.npz", "--out", "{tmp}/file/r"], 2,
                     "{tmp}/file is not a folder", id="report-out"),
        pytest.param(["demo", "--out", "{tmp}/file/d"], 1, "cannot write into {tmp}/file/d", id="demo-out"),
        pytest.param(["demo", "--device", "warp"], 2, "'warp' is not a torch device", id="demo-device"),
    ],
)  # fmt: skip
def test_bad_inputs_outputs_and_devices(argv, status, message, files, capsys):
    code, err = run_cli([a.format(tmp=files) for a in argv], capsys)
    assert code == status
    assert message.format(tmp=files) in err.splitlines()[-1]
    # argparse prints the usage line before its message (status 2)
    assert "Traceback" not in err and (status == 2 or len(err.splitlines()) == 1)


def test_missing_gpu_is_named(files, capsys):
    index = torch.cuda.device_count() if torch.cuda.is_available() else 0
    argv = ["train", f"{files}/events.npz", "--out", "m.gmm", "--device", f"cuda:{index}"]
    code, err = run_cli(argv, capsys)
    assert code == 2
    expected = "does not exist: this machine has" if index else "no cuda device on this machine"
    assert expected in err.splitlines()[-1]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="permissions do not bind root")
def test_read_only_folder_is_named(files, capsys):
    (files / "locked").mkdir(mode=0o555)
    argv = ["train", "{tmp}/events.npz", *TRAIN, "--out", "{tmp}/locked/m.gmm"]
    code, err = run_cli([a.format(tmp=files) for a in argv], capsys)
    assert code == 1 and f"no permission to write in {files}/locked" in err


def interrupt_after_first_epoch(monkeypatch, epochs: list[int]) -> None:
    """Record the epochs of every training run in ``epochs``; the first run gets Ctrl-C after its first epoch."""
    fit = DensityModel.fit

    def callback(epoch, history):
        epochs.append(epoch)
        if len(epochs) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(DensityModel, "fit", lambda *a, **k: fit(*a, **k, callback=callback))


def resume_hint(err: str) -> list[str]:
    """The arguments of the ``resume with: gmmpyro ...`` line, without the program name."""
    prefix = "resume with: gmmpyro "
    assert err.splitlines()[-1].startswith(prefix), err
    return shlex.split(err.splitlines()[-1].removeprefix(prefix))


def test_interrupted_training_keeps_a_checkpoint_and_resumes(files, capsys, monkeypatch):
    epochs: list[int] = []
    interrupt_after_first_epoch(monkeypatch, epochs)
    argv = ["train", f"{files}/events.npz", "--config", f"{files}/tiny.toml", "--out", f"{files}/m.gmm", "--quiet"]
    code, err = run_cli(argv, capsys)
    assert code == 130
    assert err.splitlines()[0] == (
        f"gmmpyro train: interrupted after 1 epoch(s); {files}/m.gmm was not written; "
        f"the run is saved in {files}/m.gmm.checkpoint"
    )
    assert resume_hint(err) == argv and len(err.splitlines()) == 2
    assert not (files / "m.gmm").exists() and list((files / "m.gmm.checkpoint").iterdir())

    with pytest.raises(SystemExit, match="belongs to other data or settings"):
        main([*argv, "--seed", "7"])  # a checkpoint is never mixed into another run
    main(resume_hint(err))
    assert epochs == [0, 1]  # the resumed run went on at the second epoch
    assert DensityModel.load(files / "m.gmm").history.n_epochs == 2
    assert not (files / "m.gmm.checkpoint").exists()  # the default folder goes once the model is saved


def test_checkpoint_dir_is_kept_after_training(files, capsys):
    argv = ["train", "{tmp}/events.npz", *TRAIN, "--out", "{tmp}/m.gmm", "--checkpoint-dir", "{tmp}/ck"]
    main([a.format(tmp=files) for a in argv])
    assert "saved" in capsys.readouterr().out
    assert list((files / "ck").iterdir()) and not (files / "m.gmm.checkpoint").exists()


def test_checkpoint_dir_needs_joint_training(files, capsys, monkeypatch):
    no_training(monkeypatch)
    config = with_config(files, "max_epochs = 2", "joint = false")
    argv = ["train", f"{files}/events.npz", "--config", config, "--out", "m.gmm", "--checkpoint-dir", "c"]
    assert run_cli(argv, capsys) == (1, "gmmpyro train: --checkpoint-dir needs joint = true in [training]\n")


def test_interruption_without_checkpoint_says_so(files, capsys, monkeypatch):
    interrupt_after_first_epoch(monkeypatch, [])
    config = with_config(files, "max_epochs = 2", "joint = false")
    code, err = run_cli(["train", f"{files}/events.npz", "--config", config, "--out", f"{files}/m.gmm"], capsys)
    assert code == 130 and not (files / "m.gmm").exists()
    assert err.endswith("nothing was kept (checkpoints need joint = true)\n") and "resume with" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_a_real_process(files):
    config = with_config(files, "max_epochs = 2", "max_epochs = 30\nstop_patience = 30")
    argv = ["train", f"{files}/events.npz", "--config", config, "--out", f"{files}/m.gmm", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "gmmpyro", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a process started in the background may inherit an ignored SIGINT; Ctrl-C in a terminal is not ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list((files / "m.gmm.checkpoint").glob("*.safetensors")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 130, err
    assert "Traceback" not in err and f"the run is saved in {files}/m.gmm.checkpoint" in err
    assert resume_hint(err) == argv and not (files / "m.gmm").exists()
    main(resume_hint(err))
    assert DensityModel.load(files / "m.gmm").history.n_epochs == 30


def test_warnings_print_one_line_each_without_arviz_notice(capsys):
    def run(args):
        warnings.warn("\nArviZ is undergoing a major refactor to improve flexibility", FutureWarning, stacklevel=1)
        warnings.warn("a setting the user should see", FutureWarning, stacklevel=1)
        return 0

    run_command(argparse.Namespace(command="infer", run=run), ["infer"])
    err = capsys.readouterr().err
    assert err.splitlines() == ["gmmpyro infer: warning: a setting the user should see (FutureWarning)"]
