"""Pseudo-experiment campaigns run as Dask tasks: :func:`coverage` of profile-likelihood intervals.

Dask's ``distributed`` (and ``pyarrow``, to store campaigns) are optional: they are imported
when a campaign runs, with an ``ImportError`` that says ``pip install "gmmpyro[distributed]"``
if they are missing. Importing this module needs neither.
"""

from __future__ import annotations

from .interval_coverage import coverage
from .result import CoverageResult

__all__ = ["CoverageResult", "coverage"]
