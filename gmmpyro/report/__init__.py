"""``gmmpyro report``: every validation figure and number for a trained model, in one folder.

:func:`write_report` compares a :class:`~gmmpyro.DensityModel` with reference events (and with
the true density where one is known), writes each figure of :mod:`gmmpyro.plots_validation`
as a PNG, and a ``summary.md`` / ``summary.json`` with one verdict line per metric and its
thresholds, so that a reader sees in a minute whether the model can be trusted.
:func:`add_report_command` adds the command to the ``gmmpyro`` CLI.
"""

from .command import add_report_command, run_report
from .config import ReportConfig, Thresholds
from .events import load_events
from .writer import ReportResult, write_report

__all__ = [
    "ReportConfig",
    "ReportResult",
    "Thresholds",
    "add_report_command",
    "load_events",
    "run_report",
    "write_report",
]
