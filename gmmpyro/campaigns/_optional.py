"""The optional dependencies of campaigns (Dask's distributed scheduler, pyarrow), imported on first use."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "require"]

INSTALL_HINT = 'pip install "gmmpyro[distributed]"'


def require(name: str) -> ModuleType:
    """Import ``name``, or raise an ``ImportError`` with the install hint.

    Example:
        >>> require("json").__name__
        'json'
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(
            f"gmmpyro.campaigns needs {name.split('.')[0]} (Dask's distributed scheduler and pyarrow): {INSTALL_HINT}"
        ) from err
