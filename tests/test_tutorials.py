"""Execute every tutorial notebook with tiny sizes (``GMMPYRO_FAST=1``) and fail on any cell error.

Each notebook runs in a fresh kernel in its own temporary working directory (files it writes,
such as saved models, land there). The kernel is a temporary kernel spec that runs the very
interpreter running the tests (put first on ``JUPYTER_PATH``), so whatever ``python3`` kernels
the machine has registered elsewhere, the notebooks see this environment's gmmpyro.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the tutorials need nbformat: pip install 'gmmpyro[test]'")
nbclient = pytest.importorskip("nbclient", reason="the tutorials need nbclient: pip install 'gmmpyro[test]'")
pytest.importorskip("ipykernel", reason="the tutorials need ipykernel: pip install 'gmmpyro[test]'")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT = 300  # s per cell; FAST mode needs a few seconds for most cells
KERNEL = "gmmpyro-tests"


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
    """A ``JUPYTER_PATH`` entry holding the kernel spec ``gmmpyro-tests`` for ``sys.executable``."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernel")
    install(kernel_name=KERNEL, display_name="gmmpyro tests", prefix=str(prefix))
    return prefix / "share" / "jupyter"


def test_tutorials_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_quickstart.ipynb",
        "02_bayesian_inference_in_pyro.ipynb",
        "03_frequentist_vs_bayesian.ipynb",
        "04_your_own_data.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, jupyter_path):
    paths = [str(jupyter_path), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(paths))
    monkeypatch.setenv("GMMPYRO_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=False,
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{err}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
