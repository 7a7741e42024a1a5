"""Warnings and errors raised by gmmpyro.

All warnings derive from :class:`GmmpyroWarning`, so they can be filtered together::

    import warnings, gmmpyro
    warnings.simplefilter("ignore", gmmpyro.GmmpyroWarning)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
import sys
import sysconfig
import warnings
from collections.abc import Iterator

__all__ = [
    "ConvergenceWarning",
    "GmmpyroWarning",
    "OutOfRangeWarning",
    "TrainingError",
    "range_warnings_enabled",
    "results_checked_by_caller",
    "warn",
]


class GmmpyroWarning(RuntimeWarning):
    """Base class of every warning issued by gmmpyro."""


class OutOfRangeWarning(GmmpyroWarning):
    """A parameter value lies outside the range the model was trained on."""


class ConvergenceWarning(GmmpyroWarning):
    """A fit or a scan point did not converge."""


class TrainingError(RuntimeError):
    """Training cannot go on: the loss became NaN or infinite, or a checkpoint does not match the run."""


_RANGE_WARNINGS = contextvars.ContextVar("gmmpyro_range_warnings", default=True)


@contextlib.contextmanager
def results_checked_by_caller() -> Iterator[None]:
    """Within this block models skip their per-call :class:`OutOfRangeWarning`.

    For callers whose intermediate points (a fit's steps, a chain's trajectory) may leave the
    trained range and that check their results once instead. A context variable, so other
    threads and tasks keep their warnings, and warning filters are left alone.

    Example:
        >>> with results_checked_by_caller():
        ...     range_warnings_enabled()
        False
    """
    token = _RANGE_WARNINGS.set(False)
    try:
        yield
    finally:
        _RANGE_WARNINGS.reset(token)


def range_warnings_enabled() -> bool:
    """Whether a model should warn about ``θ`` outside its trained range (see :func:`results_checked_by_caller`)."""
    return _RANGE_WARNINGS.get()


@functools.cache
def _internal_folders() -> tuple[str, ...]:
    """Folders whose frames :func:`warn` skips: gmmpyro, torch, Pyro and the standard library."""
    folders = [sysconfig.get_paths()["stdlib"]]
    for name in ("gmmpyro", "torch", "pyro"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders += list(spec.submodule_search_locations)
    return tuple(os.path.join(os.path.realpath(f), "") for f in folders)


def warn(message: str, category: type[Warning] = GmmpyroWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside gmmpyro, torch, Pyro and the standard library.

    A check deep inside ``log_prob`` then points at the user's own line — the ``fit`` or
    ``scan`` call, the ``pyro.sample`` statement of their Pyro model — whatever path led there,
    so warning filters by module and the ``"default"`` once-per-location rule act on user code.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn("a message", ConvergenceWarning)
        >>> caught[0].category.__name__, caught[0].filename.endswith("exceptions.py")
        ('ConvergenceWarning', False)
    """
    internal = _internal_folders()
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and os.path.realpath(frame.f_code.co_filename).startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
