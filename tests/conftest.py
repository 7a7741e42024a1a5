import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _no_global_state_leaks():
    """Fail any test that leaves torch's or Pyro's global distribution validation changed."""
    torch_validation = torch.distributions.Distribution._validate_args
    pyro_validation = pyro.distributions.is_validation_enabled()
    yield
    assert torch.distributions.Distribution._validate_args == torch_validation, "torch validation flag leaked"
    assert pyro.distributions.is_validation_enabled() == pyro_validation, "pyro validation flag leaked"
