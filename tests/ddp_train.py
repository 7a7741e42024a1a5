"""Train a small toy model; run as a script by ``torchrun`` in tests/test_data_parallel.py.

``python ddp_train.py OUT_DIR MAX_EPOCHS [STOP_AFTER_EPOCH STOP_RANK | poison]``: each process starts
from its own initial weights (seeded by its rank), so a run that does not broadcast the main
process's weights would end with models that differ. With ``STOP_AFTER_EPOCH`` the callback of
process ``STOP_RANK`` alone asks to stop after that epoch. The main process saves the model and
the checkpoint; every process writes how many epochs it ran. With ``poison`` process 1's
network turns NaN after the first epoch and each process writes the ``TrainingError`` it raised.
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


def train_small(max_epochs: int, *, rank: int = 0, checkpoint_dir=None, stop_after=None, stop_rank=None, poison=False):
    """A model trained on 150 toy events at each of the 49 grid points; batch 256 (30 steps per epoch).

    With ``poison``, process 1 alone makes a weight of its first network NaN after epoch 0.
    """
    toy = ToyModel()
    x, theta = toy.grid_dataset(150, seed=1)
    torch.manual_seed(rank)
    model = gmmpyro.DensityModel(toy.observables, toy.params, config=NETWORK)

    def callback(epoch, history):
        if poison and rank == 1:
            with torch.no_grad():
                next(model.networks[0].parameters()).view(-1)[0] = float("nan")
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
    if sys.argv[3:] == ["poison"]:
        try:
            train_small(int(sys.argv[2]), rank=rank, poison=True)
        except gmmpyro.TrainingError as error:
            (out / f"error_{rank}.txt").write_text(str(error))
        sys.exit(0)
    stop_after, stop_rank = [int(a) for a in sys.argv[3:5]] or [None, None]
    model = train_small(
        int(sys.argv[2]), rank=rank, checkpoint_dir=out / "checkpoint", stop_after=stop_after, stop_rank=stop_rank
    )
    (out / f"epochs_{rank}.txt").write_text(f"{model.history.n_epochs} {model.history.interrupted}")
    if is_main_process():
        model.save(out / "model.gmm")
