"""Warnings and errors raised by gmmpyro.

All warnings derive from :class:`GmmpyroWarning`, so they can be filtered together::

    import warnings, gmmpyro
    warnings.simplefilter("ignore", gmmpyro.GmmpyroWarning)
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import warnings

__all__ = [
    "ConvergenceWarning",
    "GmmpyroWarning",
    "OutOfRangeWarning",
    "warn",
]


class GmmpyroWarning(RuntimeWarning):
    """Base class of every warning issued by gmmpyro."""


class OutOfRangeWarning(GmmpyroWarning):
    """A parameter value lies outside the range the model was trained on."""


class ConvergenceWarning(GmmpyroWarning):
    """A fit or a scan point did not converge."""


@functools.cache
def _internal_folders() -> tuple[str, ...]:
    folders = []
    for name in ("gmmpyro", "torch", "pyro"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders += [os.path.join(p, "") for p in spec.submodule_search_locations]
    return tuple(folders)


def warn(message: str, category: type[Warning] = GmmpyroWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside gmmpyro, torch and Pyro.

    A check deep inside ``log_prob`` then points at the user's line (the ``fit``, ``scan`` or
    ``mcmc.run`` call), whatever path led there, so warning filters by module and the
    ``"default"`` once-per-location rule act on user code.
    """
    internal = _internal_folders()
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
