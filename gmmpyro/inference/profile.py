"""Frequentist inference: maximum-likelihood fits and profile-likelihood scans.

This module is ``gmmpyro.profile``::

    result = gmmpyro.profile.fit(model, x_obs)
    s = gmmpyro.profile.scan(model, x_obs, {"cx": (-1.5, 1.5, 61), "cy": (-1.5, 1.5, 61)}, profile=["nu"],
                             constraints={"nu": torch.distributions.Normal(0.0, 1.0)})
    s.contour(0.68); s.interval("cx", 0.95); s.plot()
"""

from __future__ import annotations

from .fit import FitResult, fit
from .likelihood import Likelihood
from .scan import ProfileScan, delta_q, scan

__all__ = ["FitResult", "Likelihood", "ProfileScan", "delta_q", "fit", "scan"]
