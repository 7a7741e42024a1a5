"""Pseudo-experiment campaigns run as Dask tasks.

* :func:`coverage` — coverage of profile-likelihood intervals;
* :func:`contour_agreement` — a model's and a reference density's profile-likelihood regions
  compared on many pseudo-datasets per true point (journal Fig. 15, with error bars);
* :func:`sbc` — simulation-based calibration of posteriors (rank statistics, Talts et al. 2018).

Dask's ``distributed`` (and ``pyarrow``, to store campaigns) are optional: they are imported
when a campaign runs, with an ``ImportError`` that says ``pip install "gmmpyro[distributed]"``
if they are missing. Importing this module needs neither.
"""

from __future__ import annotations

from .agreement_result import AgreementResult
from .calibration import sbc
from .contours import contour_agreement
from .interval_coverage import coverage
from .result import CoverageResult
from .sbc_result import SBCResult

__all__ = ["AgreementResult", "CoverageResult", "SBCResult", "contour_agreement", "coverage", "sbc"]
