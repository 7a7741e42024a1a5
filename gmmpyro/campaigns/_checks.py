"""Checks and identities shared by the campaigns: counts, the model's parameters, settings, seeds.

Everything here runs in the calling process before any task is sent, so that a bad input is
a ``ValueError`` or ``TypeError`` naming it, not an error in every task.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import torch

__all__ = ["check_simulator", "count", "derived_seeds", "describe", "model_params"]


def count(value: Any, name: str, low: int) -> int:
    """``value`` as an ``int >= low``, or a ``ValueError`` naming ``name``.

    Example:
        >>> count(3, "n_toys", 1)
        3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def model_params(model: Any, what: str = "model") -> tuple[str, ...]:
    """The parameter names of a :class:`~gmmpyro.protocols.ConditionalDensity` with ``theta_bounds``."""
    params = getattr(model, "params", None)
    if params is None or not hasattr(model, "theta_bounds"):
        raise TypeError(f"{what} must be a ConditionalDensity with params and theta_bounds, got {type(model).__name__}")
    return tuple(params)


def describe(obj: Any) -> str:
    """What identifies a model or simulator across runs: its repr without addresses; weights' hash for modules.

    Example:
        >>> describe(object()).startswith("<object object")
        True
    """
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))
    if isinstance(obj, torch.nn.Module):
        digest = hashlib.sha256()
        for key, value in obj.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return f"{type(obj).__module__}.{type(obj).__qualname__} (state sha256 {digest.hexdigest()[:16]})"
    return text


def check_simulator(
    simulator: Any, theta: torch.Tensor, n_observables: int, seed: int, *, what: str = "simulator"
) -> None:
    """One small draw in this process, so a simulator of the wrong shape fails here, not in every task.

    Arguments:
        simulator: has ``sample(n, theta (k,), seed=) -> (n, d)``.
        theta: a parameter point, shape ``(k,)``.
        n_observables: ``d``.
        seed: the seed of the draw.
        what: the simulator's name in the error.
    """
    if not callable(getattr(simulator, "sample", None)):
        raise TypeError(f"{what} must have a sample(n, theta, seed=) method, got {type(simulator).__name__}")
    x = torch.as_tensor(simulator.sample(2, theta, seed=seed))
    if tuple(x.shape) != (2, n_observables):
        raise ValueError(
            f"{what}.sample(n, theta (k,), seed=) must return events of shape (n, {n_observables}), "
            f"got {tuple(x.shape)} for n = 2"
        )


def derived_seeds(entropy: tuple[int, ...], n: int) -> list[int]:
    """``n`` seeds of one task, from its identity ``entropy`` (the campaign's seed and the task's indices).

    ``numpy.random.SeedSequence`` mixes the integers, so neighbouring tasks get unrelated
    streams, and a task's seeds do not depend on how many tasks there are. The seeds have 63
    bits (they fit a signed 64-bit column), and the ``n`` of one task are distinct streams:
    one integer seeding two generators of the same kind would make their draws equal.

    Example:
        >>> derived_seeds((0, 2, 5), 2) == derived_seeds((0, 2, 5), 2) != derived_seeds((0, 5, 2), 2)
        True
    """
    state = np.random.SeedSequence(list(entropy)).generate_state(n, np.uint64)
    return [int(s >> np.uint64(1)) for s in state]
