"""Small trained models shared by the test files.

The trained toy model is read from ``tests/data`` (see its README for how it was made):
training it costs tens of seconds per test run, reading it milliseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from gmmpyro import DensityModel, NetworkConfig

DATA = Path(__file__).parent / "data"
SMALL_NETWORK = NetworkConfig(n_gauss=8, A1=24, B1=24, B2=6, C=1, D=2, s_f=0.1, s_mu=0.1, s_sigma=0.1)
_FILES = {torch.float64: "toy_small_v1.gmm", torch.float32: "toy_small_f32_v1.gmm"}


@functools.cache
def trained_toy_model(dtype: torch.dtype = torch.float64, device: str = "cpu") -> DensityModel:
    """A small DensityModel of the toy (``SMALL_NETWORK``, 6 epochs on the 49-point grid), on ``device``."""
    return DensityModel.load(DATA / _FILES[dtype], map_location=device)
