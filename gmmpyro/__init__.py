"""gmmpyro: learned conditional likelihoods as Pyro distributions."""

from . import exceptions, observables, projection, protocols
from .exceptions import ConvergenceWarning, GmmpyroWarning, OutOfRangeWarning
from .observables import Observable
from .projection import LatentProjection
from .protocols import ConditionalDensity, PreparedEvents

__version__ = "0.1.0"

__all__ = [
    "ConditionalDensity",
    "ConvergenceWarning",
    "GmmpyroWarning",
    "LatentProjection",
    "Observable",
    "OutOfRangeWarning",
    "PreparedEvents",
    "__version__",
    "exceptions",
    "observables",
    "projection",
    "protocols",
]
