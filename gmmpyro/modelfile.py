"""Model files: one safetensors file holding tensors and a validated JSON header.

Nothing is unpickled on load. The header carries a format name and version, the package
version that wrote it, and a JSON description of the model (observables, parameters,
order, network constants, projection settings, training history); loading checks the
envelope (format, version, readable JSON with the expected keys), rebuilds the model from
the description and checks the tensors against it. Use :meth:`gmmpyro.DensityModel.save`
and :meth:`~gmmpyro.DensityModel.load`.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .networks import NetworkConfig
from .observables import Observable
from .projection import LatentProjection

__all__ = ["FORMAT", "FORMAT_VERSION", "load_model", "read_model_file", "save_model", "write_model_file"]

FORMAT = "gmmpyro.DensityModel"
FORMAT_VERSION = 1
_FLOAT64_BUFFERS = ("theta_low", "theta_high")  # kept in float64 whatever the networks' dtype
_CONFIG_KEYS = {
    "observables": list,
    "params": list,
    "order": list,
    "network": dict,
    "dtype": str,
    "projection": dict,
}


def _package_version() -> str:
    try:
        return version("gmmpyro")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def write_model_file(path: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``tensors`` and the JSON-serialisable ``config`` to ``path``.

    Arguments:
        path: the file (conventionally ``*.gmm``); its directory must exist.
        tensors: named tensors; written from CPU, contiguous.
        config: the model description (keys ``observables, params, order, network, dtype,
            projection`` and optionally ``history``).

    Raises:
        ValueError: the directory does not exist (checked before anything is written).

    Example:
        >>> import tempfile, os
        >>> cfg = {"observables": [], "params": [], "order": [], "network": {}, "dtype": "float32", "projection": {}}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_model_file(os.path.join(tmp, "m.gmm"), {"w": torch.zeros(2)}, cfg)
        ...     read_model_file(os.path.join(tmp, "m.gmm"))[1]["w"]
        tensor([0., 0.])
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: directory {path.parent} does not exist")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "gmmpyro_version": _package_version(),
        "config": json.dumps(config),
    }
    # written beside the target and renamed: an interrupted save never leaves a half-written model file
    partial = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(partial), metadata=metadata)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_model_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a file written by :func:`write_model_file`: ``(config, tensors)`` on the CPU.

    Raises:
        ValueError: naming the file, when it is unreadable, not a gmmpyro model, of another
            format version, or its header lacks a key or has one of the wrong type.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable gmmpyro model file: {error}") from error
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gmmpyro DensityModel file (format {header.get('format')!r})")
    file_version = header.get("format_version")
    if file_version != str(FORMAT_VERSION):
        raise ValueError(
            f"{path} has model format version {file_version} (written by gmmpyro "
            f"{header.get('gmmpyro_version', '?')}); this gmmpyro reads version {FORMAT_VERSION}"
        )
    try:
        config = json.loads(header.get("config", ""))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the model header is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the model header must be a JSON object, got {type(config).__name__}")
    for key, kind in _CONFIG_KEYS.items():
        if not isinstance(config.get(key), kind):
            found = "missing" if key not in config else f"a {type(config[key]).__name__}"
            raise ValueError(f"{path}: header field {key!r} must be a {kind.__name__}, is {found}")
    return config, tensors


def save_model(model, path: str | Path) -> None:
    """Write a trained :class:`~gmmpyro.DensityModel` to ``path`` (see :meth:`DensityModel.save`)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"projection.{k}": v for k, v in model.projection.state_dict().items()})
    config = {
        "observables": [o.to_dict() for o in model.observables],
        "params": list(model.params),
        "order": list(model.order),
        "ensemble": model.ensemble,
        "network": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "projection": model.projection.config(),
        "history": model.history.to_dict() if model.history is not None else None,
    }
    write_model_file(path, tensors, config)


def load_model(cls, path: str | Path, map_location: torch.device | str | None = None):
    """Read a model of class ``cls`` written by :func:`save_model` (see :meth:`DensityModel.load`)."""
    from .training import TrainingHistory

    config, tensors = read_model_file(path)
    try:
        dtype = getattr(torch, config["dtype"])
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"not a floating-point dtype: {config['dtype']!r}")
        model = cls(
            [Observable.from_dict(o) for o in config["observables"]],
            config["params"],
            config=NetworkConfig.from_dict(config["network"]),
            order=config["order"],
            ensemble=config.get("ensemble", 1),  # files written before ensembles existed hold one model
            dtype=dtype,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: the model header is inconsistent: {error}") from error
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    wrong_dtype = sorted(
        k for k, v in state.items() if v.is_floating_point() and k not in _FLOAT64_BUFFERS and v.dtype != dtype
    )
    if wrong_dtype:
        raise ValueError(f"{path}: tensors {wrong_dtype[:3]} are not {config['dtype']} as the header says")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: tensors do not match the architecture in its header: {error}") from error
    low, high = model.theta_low, model.theta_high
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
        raise ValueError(
            f"{path}: the parameter range must be finite with high > low, got {low.tolist()}, {high.tolist()}"
        )
    projection_tensors = {k.removeprefix("projection."): v for k, v in tensors.items() if k.startswith("projection.")}
    try:
        model.set_projection(LatentProjection.from_config(config["projection"], projection_tensors))
        if config.get("history") is not None:
            model.history = TrainingHistory.from_dict(config["history"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: the projection or history in its header is inconsistent: {error!r}") from error
    model.eval()
    return model.to(map_location) if map_location is not None else model
