"""All gmmpyro figures in one namespace (matplotlib; each takes ``ax=``/``axes=`` and returns the Figure).

* Inference: :func:`compare` (profile-likelihood contours and ``q = -2 Δln L`` curves beside
  the posterior's credible regions and ``-2 ln(p/p_max)``, truth marked), :func:`plot_profile`.
* Validation: :func:`plot_marginals`, :func:`plot_pairs`, :func:`plot_parameter_dependence`,
  :func:`plot_contour_agreement`.
* The model itself: :func:`plot_mixture`, :func:`plot_training_history`.

Import them from here (``gmmpyro.plotting.compare``); the submodules ``inference``,
``validation`` and ``model`` hold one subject each.
"""

from .inference import compare, plot_profile
from .model import plot_mixture, plot_training_history
from .validation import plot_contour_agreement, plot_marginals, plot_pairs, plot_parameter_dependence

__all__ = [
    "compare",
    "plot_contour_agreement",
    "plot_marginals",
    "plot_mixture",
    "plot_pairs",
    "plot_parameter_dependence",
    "plot_profile",
    "plot_training_history",
]
