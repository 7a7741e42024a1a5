"""Warnings and errors raised by gmmpyro.

All warnings derive from :class:`GmmpyroWarning`, so they can be filtered together::

    import warnings, gmmpyro
    warnings.simplefilter("ignore", gmmpyro.GmmpyroWarning)
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "GmmpyroWarning",
    "OutOfRangeWarning",
]


class GmmpyroWarning(RuntimeWarning):
    """Base class of every warning issued by gmmpyro."""


class OutOfRangeWarning(GmmpyroWarning):
    """A parameter value lies outside the range the model was trained on."""


class ConvergenceWarning(GmmpyroWarning):
    """A fit or a scan point did not converge."""
