"""``gmmpyro report``: every validation figure and number for a trained model, in one folder.

:func:`write_report` compares a :class:`~gmmpyro.DensityModel` with reference events (and with
the true density where one is known), writes each validation figure of :mod:`gmmpyro.plotting`
as a PNG, and a ``summary.md`` / ``summary.json`` with one verdict line per metric and its
thresholds (:class:`Thresholds`), so that a reader sees in a minute whether the model can be
trusted. The overall verdict, first in the summary, is the worst graded one; a metric reported
as information only (``INFO``: the classifier test of :meth:`ReportConfig.quick`, too weak to
pass a model) or not run (``SKIP``) does not count.

The ``gmmpyro report`` command runs it from the shell and exits with status 1 when the verdict
is FAIL (with ``--strict`` also WARN), so that scripts and CI can stop on a bad model
(:meth:`ReportResult.exit_status` from Python).
"""

from .config import ReportConfig
from .events import load_events
from .grading import Thresholds
from .writer import ReportResult, write_report

__all__ = [
    "ReportConfig",
    "ReportResult",
    "Thresholds",
    "load_events",
    "write_report",
]
