"""Train a small toy model; run as a script by ``torchrun`` in tests/test_data_parallel.py.

``python ddp_train.py OUT_DIR MAX_EPOCHS [STOP_AFTER_EPOCH STOP_RANK]``: each process starts
from its own initial weights (seeded by its rank), so a run that does not broadcast the main
process's weights would end with models that differ. With ``STOP_AFTER_EPOCH`` the callback of
process ``STOP_RANK`` alone asks to stop after that epoch. The main process saves the model and
the checkpoint; every process writes how many epochs it ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import gmmpyro
from gmmpyro.data_parallel import is_main_process
from gmmpyro.toy import ToyModel

NETWORK = gmmpyro.NetworkConfig(n_gauss=4, A1=16, B1=16, B2=8, C=2, D=2)


def train_small(max_epochs: int, *, rank: int = 0, checkpoint_dir=None, stop_after=None, stop_rank=None):
    """A model trained on 150 toy events at each of the 49 grid points; batch 256 (30 steps per epoch)."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(150, seed=1)
    torch.manual_seed(rank)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=NETWORK)

    def callback(epoch, history):
        return stop_after is not None and rank == stop_rank and epoch >= stop_after

    model.fit(
        x.float(),
        theta.float(),
        config=gmmpyro.TrainingConfig(batch_size=256, max_epochs=max_epochs),
        progress=False,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
    )
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    stop_after, stop_rank = [int(a) for a in sys.argv[3:5]] or [None, None]
    model = train_small(
        int(sys.argv[2]), rank=rank, checkpoint_dir=out / "checkpoint", stop_after=stop_after, stop_rank=stop_rank
    )
    (out / f"epochs_{rank}.txt").write_text(f"{model.history.n_epochs} {model.history.interrupted}")
    if is_main_process():
        model.save(out / "model.gmm")
