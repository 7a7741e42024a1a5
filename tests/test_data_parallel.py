"""Data-parallel training: two gloo processes under ``torchrun`` train the single-process model.

The processes split every batch between them, so they compute the same steps as one process;
only the order in which the two halves of each sum are added differs. Float32 rounding of
those sums (eps 1.2e-7) changes losses by ~1e-7; Adam normalises each gradient component, so
where a component is at the rounding level a step may differ by up to the learning rate
(1e-3) for that weight: weights agree to 3e-3 (measured up to 4e-5 after 3 epochs), validation
losses to 1e-5 nats (measured 7e-7). A run that skipped the broadcast of the initial weights
(each process here starts from its own) or the gradient averaging would differ by 0.1 or more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_train import train_small

from gmmpyro import DensityModel
from gmmpyro.cli.train import _process_device
from gmmpyro.data_parallel import SINGLE, DataParallel, current, is_main_process
from gmmpyro.toy import ToyModel

WORKER = Path(__file__).with_name("ddp_train.py")


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_same_model(a: DensityModel, b: DensityModel) -> None:
    for (name, wa), wb in zip(a.networks.state_dict().items(), b.networks.state_dict().values(), strict=True):
        torch.testing.assert_close(wa, wb, atol=3e-3, rtol=0, msg=name)
    np.testing.assert_allclose(a.history.val_loss, b.history.val_loss, atol=1e-5, rtol=0)
    assert a.history.best_epoch == b.history.best_epoch


def test_two_processes_train_like_one_stop_together_and_resume(tmp_path):
    # process 1 alone asks to stop after epoch 2 of 4: both stop there
    _torchrun(str(WORKER), str(tmp_path), "4", "2", "1", cwd=tmp_path)
    assert [(tmp_path / f"epochs_{r}.txt").read_text() for r in (0, 1)] == ["3 True", "3 True"]
    two = DensityModel.load(tmp_path / "model.gmm")
    _assert_same_model(two, train_small(3))
    # the main process's checkpoint continues in one process like an uninterrupted single-process run
    resumed = train_small(4, checkpoint_dir=tmp_path / "checkpoint")
    _assert_same_model(resumed, train_small(4))


def test_a_divergence_in_one_process_stops_every_process(tmp_path):
    _torchrun(str(WORKER), str(tmp_path), "3", "poison", cwd=tmp_path)  # returns, so no process waits forever
    for rank in (0, 1):
        message = (tmp_path / f"error_{rank}.txt").read_text()
        assert "training diverged in epoch 1" in message and "'x0'" in message


def test_torchrun_runs_the_train_command_and_one_process_writes(tmp_path):
    toy = ToyModel()
    x, theta = toy.grid_dataset(60, grid=[[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]], seed=0)
    np.savez(tmp_path / "train.npz", x=x.numpy(), theta=theta.numpy())
    observables = ["x0:100:800", "x1:100:800", "x2:-pi:pi", "x3"]
    command = ["train", "train.npz", "--observables", *observables, "--params", "cx", "cy", "--epochs", "2"]
    done = _torchrun("-m", "gmmpyro", *command, "--out", "m.gmm", cwd=tmp_path)
    assert done.stdout.count("saved m.gmm") == 1
    assert DensityModel.load(tmp_path / "m.gmm").history.n_epochs == 2
    assert not (tmp_path / "m.gmm.checkpoint").exists()  # removed once the model is saved


def test_a_single_process_communicates_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert current() is SINGLE and is_main_process()
    index = torch.arange(7)
    assert torch.equal(SINGLE.shard(index), index) and SINGLE.any(True) and not SINGLE.any(False)
    values = torch.tensor([1.0, 2.0])
    assert SINGLE.sum(values) is values and torch.equal(values, torch.tensor([1.0, 2.0]))
    module = torch.nn.Linear(2, 2)
    assert SINGLE.wrap(module) is module
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_each_process_takes_every_nth_event_of_a_batch():
    index = torch.arange(10)
    shards = [DataParallel(rank=r, world_size=3).shard(index) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


@pytest.mark.parametrize(
    ("given", "local_rank", "expected"),
    [("cuda", "1", "cuda:1"), ("cuda:0", "1", "cuda:0"), ("cpu", "1", "cpu"), ("cuda", None, "cuda")],
)
def test_torchrun_gives_each_process_its_gpu(given, local_rank, expected, monkeypatch):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert _process_device(torch.device(given)) == torch.device(expected)
