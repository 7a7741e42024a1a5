"""The TOML configuration file of ``gmmpyro train``: every section checked, every key known.

A file may hold::

    params = ["cx", "cy"]
    weights = "w"                  # column of event weights
    reference = {cx = 0, cy = 0}   # the reference point of the projection
    ensemble = 5                   # members of DensityModel(ensemble=K); default 1

    [[observables]]
    name = "m"
    bounds = [0, 10]               # optional, as are discrete and f

    [network]                      # fields of gmmpyro.NetworkConfig
    n_gauss = 12

    [training]                     # fields of gmmpyro.TrainingConfig
    max_epochs = 50
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from ..networks import NetworkConfig
from ..observables import Observable
from ..training import TrainingConfig
from .parsing import load_toml

__all__ = ["TrainConfigFile", "check_keys", "load_train_config"]

_TOP_LEVEL = ("observables", "params", "weights", "reference", "ensemble", "network", "training")
_OBSERVABLE = ("name", "bounds", "discrete", "f")


@dataclass(frozen=True)
class TrainConfigFile:
    """The settings read from a ``gmmpyro train --config`` file; the defaults stand for an absent file."""

    observables: tuple[Observable, ...] = ()
    params: tuple[str, ...] = ()
    weights: str | None = None
    reference: Mapping[str, float] | None = None
    ensemble: int = 1
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def check_keys(keys: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` naming the first unknown key, its closest allowed spelling and every allowed key.

    Example:
        >>> check_keys(["max_epoch"], ["max_epochs", "seed"], "[training]")
        Traceback (most recent call last):
        ...
        ValueError: [training]: unknown key 'max_epoch' (did you mean 'max_epochs'?); allowed keys: max_epochs, seed
    """
    allowed = sorted(allowed)
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}")


def load_train_config(path: str) -> TrainConfigFile:
    """Read and check a ``gmmpyro train --config`` file.

    Raises:
        ValueError: naming the file and the section, for an unknown key, a value of the wrong
            type, or settings that :class:`~gmmpyro.NetworkConfig`, :class:`~gmmpyro.TrainingConfig`
            or :class:`~gmmpyro.Observable` reject.
    """
    content = load_toml(path)
    check_keys(content, _TOP_LEVEL, f"{path}: top level")
    params = content.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ValueError(f"{path}: params must be a list of names, got {params!r}")
    weights = content.get("weights")
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"{path}: weights must be a column name, got {weights!r}")
    ensemble = content.get("ensemble", 1)
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"{path}: ensemble must be an integer >= 1 (the number of members), got {ensemble!r}")
    reference = _table(content, "reference", path) if "reference" in content else None
    for name, value in (reference or {}).items():
        _check_type(value, 0.0, f"{path}: reference {name}")
    return TrainConfigFile(
        observables=tuple(_observables(content.get("observables", []), path)),
        params=tuple(params),
        weights=weights,
        reference=reference,
        ensemble=ensemble,
        network=_section(content, "network", NetworkConfig, path),
        training=_section(content, "training", TrainingConfig, path),
    )


def _table(content: dict, name: str, path: str) -> dict:
    table = content.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: {name} must be a table ([{name}] or {name} = {{...}}), got {table!r}")
    return table


def _section(content: dict, name: str, cls: type, path: str):
    """A ``[network]`` or ``[training]`` table as an instance of the dataclass ``cls``."""
    table = _table(content, name, path)
    where = f"{path}: [{name}]"
    check_keys(table, [f.name for f in fields(cls)], where)
    defaults = cls()
    for key, value in table.items():
        _check_type(value, getattr(defaults, key), f"{where}: {key}")
    try:
        return cls(**table)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


_KINDS = ((bool, (bool,), "true or false"), (int, (int,), "an integer"), (float, (int, float), "a number"),
          (str, (str,), "a string"), (tuple, (list,), "an array"))  # fmt: skip


def _check_type(value, default, where: str) -> None:
    """Raise ``ValueError`` unless the TOML ``value`` has the kind of the field's ``default``."""
    for kind, accepted, words in _KINDS:
        if isinstance(default, kind):
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
                raise ValueError(f"{where} must be {words}, got {value!r}")
            return


def _observables(entries, path: str) -> list[Observable]:
    """The ``[[observables]]`` tables as :class:`~gmmpyro.Observable` objects."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path}: observables must be [[observables]] tables, got {entries!r}")
    observables = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: [[observables]] #{number}"
        check_keys(entry, _OBSERVABLE, where)
        if "name" not in entry:
            raise ValueError(f"{where}: needs a name")
        bounds = entry.get("bounds")
        try:
            observables.append(Observable(**{**entry, "bounds": None if bounds is None else tuple(bounds)}))
        except (TypeError, ValueError) as error:  # e.g. bounds = 3, or bounds out of order
            raise ValueError(f"{where}: {error}") from error
    return observables
