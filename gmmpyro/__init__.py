"""gmmpyro: learned conditional likelihoods as Pyro distributions."""

from . import exceptions, observables, protocols
from .exceptions import ConvergenceWarning, GmmpyroWarning, OutOfRangeWarning
from .observables import Observable
from .protocols import ConditionalDensity, PreparedEvents

__version__ = "0.1.0"

__all__ = [
    "ConditionalDensity",
    "ConvergenceWarning",
    "GmmpyroWarning",
    "Observable",
    "OutOfRangeWarning",
    "PreparedEvents",
    "__version__",
    "exceptions",
    "observables",
    "protocols",
]
