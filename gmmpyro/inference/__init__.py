"""Inference on the parameters of a conditional density: Bayesian and frequentist.

:mod:`~gmmpyro.inference.profile` (fits and scans) imports no Pyro; :mod:`~gmmpyro.inference.bayes`
(NUTS) loads on first use.
"""

import importlib

from . import profile
from .likelihood import Likelihood
from .terms import LogLikelihoodTerm, PoissonTerm

__all__ = ["Likelihood", "LogLikelihoodTerm", "PoissonTerm", "bayes", "profile"]

_LAZY = ("bayes",)  # imports Pyro


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
