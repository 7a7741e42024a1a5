"""The θ-independent work on observed events, done once and found again by tensor identity.

NUTS scores the same observed tensor thousands of times at different ``θ``. The work on
those events that does not depend on ``θ`` (projection, log-Jacobian, the events' branch of
the networks) is done once by ``model.prepare(x_obs)`` and reused: the second time
:meth:`gmmpyro.GMMDistribution.log_prob` sees the *same tensor object*, unchanged, with an
unchanged model, it prepares it and keeps the result in a small cache on the model (at most
four tensors; weak references, so the cache alone keeps no tensor alive). The cache key is
the tensor's identity, its in-place version counter, data pointer, shape and strides, and
the version counters of the model's parameters and buffers, so an in-place edit of the
data or a training step invalidates it. Edits that bypass PyTorch's version counter
(through ``.data`` or a NumPy array sharing memory) are not seen: don't change observed
data that way while a sampler runs. The cache is not used while the model (or an
``nn.Module`` it holds) is in training mode, under ``torch.inference_mode``, or for values
that require grad; the prepared work is done under ``torch.no_grad`` (gradients flow to
``θ``, not to network weights). Copies and pickles of a model start with an empty cache.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from .protocols import ConditionalDensity, PreparedEvents

__all__ = ["lookup", "modules_of", "register"]

_CACHE_ATTR = "_gmmpyro_prepared_cache"
_CACHE_SIZE = 4


def modules_of(model) -> list[nn.Module]:
    """The model itself if it is an ``nn.Module``, else the ``nn.Module`` attributes it holds."""
    if isinstance(model, nn.Module):
        return [model]
    return [v for v in vars(model).values() if isinstance(v, nn.Module)] if hasattr(model, "__dict__") else []


def _model_key(model) -> tuple | None:
    """Version stamp of the model's tensors; ``None`` if the cache must not be used (training mode)."""
    mods = modules_of(model)
    if any(m.training for m in mods):
        return None
    tensors = [t for mod in mods for t in (*mod.parameters(), *mod.buffers())]
    if hasattr(model, "__dict__"):
        tensors += [v for v in vars(model).values() if isinstance(v, torch.Tensor)]
    return (
        str(model.dtype),
        str(model.device),
        tuple((t.data_ptr(), t._version) for t in tensors),
    )


class _Entry:
    __slots__ = ("key", "prepared", "ref", "tried", "valid")

    def __init__(self, value: torch.Tensor, key: tuple) -> None:
        self.ref = weakref.ref(value)
        self.key = key
        self.prepared: PreparedEvents | None = None
        self.tried = False  # prepare attempted (not done for values outside the support)
        self.valid = False  # value inside the support


class _PreparedCache:
    """At most ``_CACHE_SIZE`` recently scored tensors of one model, most recent last."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    # a copied or pickled model starts with an empty cache (weak references don't pickle)
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.entries = []

    def __deepcopy__(self, memo) -> _PreparedCache:
        return _PreparedCache()

    def find(self, value: torch.Tensor, key: tuple) -> _Entry | None:
        self.entries = [e for e in self.entries if e.ref() is not None]
        for e in self.entries:
            if e.ref() is value:
                if e.key == key:
                    return e
                self.entries.remove(e)  # stale: data or model changed
                return None
        return None

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        del self.entries[:-_CACHE_SIZE]


def _cache_of(model) -> _PreparedCache | None:
    cache = getattr(model, _CACHE_ATTR, None)
    if cache is None:
        cache = _PreparedCache()
        try:
            object.__setattr__(model, _CACHE_ATTR, cache)  # bypasses nn.Module/dataclass hooks
        except (AttributeError, TypeError):  # __slots__ without a place for it: no cache
            return None
    return cache


def _value_key(model, value: torch.Tensor) -> tuple | None:
    if value.requires_grad or torch.is_inference_mode_enabled() or value.dim() == 0:
        return None
    mkey = _model_key(model)
    if mkey is None:
        return None
    return (value._version, value.data_ptr(), tuple(value.shape), value.stride(), value.dtype, mkey)


def lookup(model, value: torch.Tensor) -> _Entry | None:
    """The cache entry of ``value``, prepared from its second sighting on."""
    key = _value_key(model, value)
    cache = _cache_of(model) if key is not None else None
    if cache is None:
        return None
    entry = cache.find(value, key)
    if entry is None:
        entry = _Entry(value, key)
        cache.add(entry)
        return None
    if not entry.tried:
        _prepare(model, value, entry)
    return entry


def _prepare(model, value: torch.Tensor, entry: _Entry) -> None:
    entry.tried = True
    d = len(model.observables)
    if value.shape[-1] != d:
        return
    x = value.detach().to(dtype=model.dtype, device=model.device).reshape(-1, d)  # N d
    if not all(bool(o.support.check(x[:, i]).all()) for i, o in enumerate(model.observables)):
        return  # values outside the support: the direct path masks them to -inf
    with torch.no_grad():
        entry.prepared = model.prepare(x)
    entry.valid = True


def register(model: ConditionalDensity, x: torch.Tensor, prepared: PreparedEvents) -> None:
    """Make ``GMMDistribution.log_prob(x)`` reuse ``prepared`` from its first call on.

    For code that owns an observed tensor, has prepared it and will score it many times
    (:func:`gmmpyro.bayes.sample_posterior`).

    Arguments:
        model: the conditional density.
        x: observed events, shape ``(N, d)``, inside the support, as given to ``model.prepare``.
        prepared: ``model.prepare(x)``.
    """
    key = _value_key(model, x)
    cache = _cache_of(model) if key is not None else None
    if cache is None:
        return
    entry = cache.find(x, key)
    if entry is None:
        entry = _Entry(x, key)
        cache.add(entry)
    entry.prepared, entry.tried, entry.valid = prepared, True, True
