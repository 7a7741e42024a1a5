"""Small trained models shared by the test files (trained once per test session)."""

from __future__ import annotations

import functools

import torch

from gmmpyro import DensityModel, NetworkConfig, TrainingConfig
from gmmpyro.toy import ToyModel

SMALL_NETWORK = NetworkConfig(n_gauss=8, A1=24, B1=24, B2=6, C=1, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1)


@functools.cache
def trained_toy_model(dtype: torch.dtype = torch.float64) -> DensityModel:
    """A small DensityModel trained for a few epochs on the toy's 49-point grid (seconds)."""
    toy = ToyModel()
    x, theta = toy.grid_dataset(400, seed=0)
    torch.manual_seed(0)
    model = DensityModel(toy.observables, toy.params, config=SMALL_NETWORK, dtype=dtype)
    config = TrainingConfig(batch_size=256, learning_rate=3e-3, max_epochs=6)
    model.fit(x, theta, config=config, progress=False)
    return model
