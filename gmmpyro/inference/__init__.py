"""Inference on the parameters of a conditional density: Bayesian and frequentist."""

from .terms import LogLikelihoodTerm, PoissonTerm

__all__ = ["LogLikelihoodTerm", "PoissonTerm"]
