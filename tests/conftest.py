import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device of the model batteries: cpu, cuda, cuda:1, ...")
    parser.addoption(
        "--dtype", default="float64", choices=("float32", "float64"), help="dtype of the model batteries"
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device given by ``--device`` (tests that take it run there)."""
    device = torch.device(request.config.getoption("--device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    return device


@pytest.fixture(scope="session")
def dtype(request) -> torch.dtype:
    """The dtype given by ``--dtype``."""
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture(autouse=True)
def _no_global_state_leaks():
    """Fail any test that leaves torch's or Pyro's global distribution validation changed."""
    torch_validation = torch.distributions.Distribution._validate_args
    pyro_validation = pyro.distributions.is_validation_enabled()
    yield
    assert torch.distributions.Distribution._validate_args == torch_validation, "torch validation flag leaked"
    assert pyro.distributions.is_validation_enabled() == pyro_validation, "pyro validation flag leaked"
