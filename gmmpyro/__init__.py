"""gmmpyro: learned conditional likelihoods as Pyro distributions.

Menary & Price's autoregressive Gaussian mixture on a bounded latent space, trained on
simulated events, exposed as a Pyro distribution for NUTS posteriors and as a likelihood
for profile-likelihood scans.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from . import designs, exceptions, observables, projection, protocols, toy
from .exceptions import ConvergenceWarning, GmmpyroWarning, OutOfRangeWarning, TrainingError
from .inference import profile
from .inference.fit_config import FitConfig
from .inference.terms import PoissonTerm
from .model import DensityModel, MixtureComponents
from .networks import NetworkConfig
from .observables import Observable
from .projection import LatentProjection
from .protocols import ConditionalDensity, PreparedEvents
from .streaming import ParquetEvents
from .training import TrainingConfig, TrainingHistory

try:
    __version__ = version("gmmpyro")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "unknown"

__all__ = [
    "ConditionalDensity",
    "ConvergenceWarning",
    "DensityModel",
    "FitConfig",
    "GMMDistribution",
    "GmmpyroWarning",
    "LatentProjection",
    "MixtureComponents",
    "NUTSConfig",
    "NetworkConfig",
    "Observable",
    "OutOfRangeWarning",
    "ParquetEvents",
    "PoissonTerm",
    "PreparedEvents",
    "TrainingConfig",
    "TrainingError",
    "TrainingHistory",
    "__version__",
    "bayes",
    "campaigns",
    "designs",
    "exceptions",
    "observables",
    "plotting",
    "profile",
    "projection",
    "protocols",
    "toy",
    "validation",
]

# loaded on first use: matplotlib (plotting, validation) and Pyro (the rest) cost seconds to import
_LAZY_MODULES = {
    "plotting": ".plotting",
    "validation": ".validation",
    "bayes": ".inference.bayes",
    "campaigns": ".campaigns",
}
_LAZY_NAMES = {"GMMDistribution": ".distribution", "NUTSConfig": ".inference.bayes"}


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name], __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
