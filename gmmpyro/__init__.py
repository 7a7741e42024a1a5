"""gmmpyro: learned conditional likelihoods as Pyro distributions.

Menary & Price's autoregressive Gaussian mixture on a bounded latent space, trained on
simulated events, exposed as a Pyro distribution for NUTS posteriors and as a likelihood
for profile-likelihood scans.
"""

import importlib

from . import exceptions, observables, projection, protocols, toy
from .distribution import GMMDistribution
from .exceptions import ConvergenceWarning, GmmpyroWarning, OutOfRangeWarning
from .inference import bayes, profile
from .inference.bayes import NUTSConfig
from .inference.terms import PoissonTerm
from .model import DensityModel, MixtureComponents
from .networks import NetworkConfig
from .observables import Observable
from .projection import LatentProjection
from .protocols import ConditionalDensity, PreparedEvents
from .training import TrainingConfig, TrainingHistory

__version__ = "0.1.0"

__all__ = [
    "ConditionalDensity",
    "ConvergenceWarning",
    "DensityModel",
    "GMMDistribution",
    "GmmpyroWarning",
    "LatentProjection",
    "MixtureComponents",
    "NUTSConfig",
    "NetworkConfig",
    "Observable",
    "OutOfRangeWarning",
    "PoissonTerm",
    "PreparedEvents",
    "TrainingConfig",
    "TrainingHistory",
    "__version__",
    "bayes",
    "exceptions",
    "observables",
    "plotting",
    "profile",
    "projection",
    "protocols",
    "toy",
    "validation",
]

_LAZY = ("plotting", "validation")  # they import matplotlib; load on first use


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
