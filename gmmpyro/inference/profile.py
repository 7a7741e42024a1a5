"""Frequentist inference: maximum-likelihood fits and profile-likelihood scans.

This module is ``gmmpyro.profile``::

    result = gmmpyro.profile.fit(model, x_obs)
    s = gmmpyro.profile.scan(model, x_obs, {"cx": (-1.5, 1.5, 61), "cy": (-1.5, 1.5, 61)}, profile=["nu"],
                             constraints={"nu": torch.distributions.Normal(0.0, 1.0)})
    s.contour(0.68); s.interval("cx", 0.95); s.plot()

The minimiser's settings (starts, tolerance, iterations) go in one
:class:`~gmmpyro.inference.fit_config.FitConfig`, ``config=``; a ready
:class:`~gmmpyro.inference.likelihood.Likelihood` takes the place of ``model, x_obs`` to
prepare the events once for several fits and scans. Nothing here imports Pyro.
"""

from __future__ import annotations

from .fit import FitResult, fit
from .fit_config import FitConfig
from .likelihood import Likelihood
from .scan import ProfileScan, scan
from .wilks import delta_q

__all__ = ["FitConfig", "FitResult", "Likelihood", "ProfileScan", "delta_q", "fit", "scan"]
