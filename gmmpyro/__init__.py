"""gmmpyro: learned conditional likelihoods as Pyro distributions.

Menary & Price's autoregressive Gaussian mixture on a bounded latent space, trained on
simulated events, exposed as a Pyro distribution for NUTS posteriors and as a likelihood
for profile-likelihood scans.
"""

from . import exceptions, observables, projection, protocols, toy
from .exceptions import ConvergenceWarning, GmmpyroWarning, OutOfRangeWarning
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
    "GmmpyroWarning",
    "LatentProjection",
    "MixtureComponents",
    "NetworkConfig",
    "Observable",
    "OutOfRangeWarning",
    "PreparedEvents",
    "TrainingConfig",
    "TrainingHistory",
    "__version__",
    "exceptions",
    "observables",
    "projection",
    "protocols",
    "toy",
]
