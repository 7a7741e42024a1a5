"""Inference on the parameters of a conditional density: Bayesian and frequentist."""

from . import bayes, profile
from .likelihood import Likelihood
from .terms import LogLikelihoodTerm, PoissonTerm

__all__ = ["Likelihood", "LogLikelihoodTerm", "PoissonTerm", "bayes", "profile"]
