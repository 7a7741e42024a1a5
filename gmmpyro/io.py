"""Saving and loading trained models: one safetensors file, tensors plus a JSON header.

Nothing is unpickled on load. The header carries a format name and version, the package
version, and everything needed to rebuild the model (observables, parameters, order,
network constants, projection settings, training history).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .networks import NetworkConfig
from .observables import Observable
from .projection import LatentProjection

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

FORMAT = "gmmpyro.DensityModel"
FORMAT_VERSION = 1


def save_model(model, path: str | Path) -> None:
    """Write ``model`` to ``path`` (conventionally ``*.gmm`` or ``*.safetensors``).

    Example:
        >>> # model.save("toy.gmm"); DensityModel.load("toy.gmm")
    """
    from . import __version__

    model._require_fitted()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"projection.{k}": v for k, v in model.projection.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    config = {
        "observables": [o.to_dict() for o in model.observables],
        "params": list(model.params),
        "order": list(model.order),
        "network": model.config.to_dict(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "projection": model.projection.config(),
        "history": model.history.to_dict() if model.history is not None else None,
    }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "gmmpyro_version": __version__,
        "config": json.dumps(config),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_model(path: str | Path, map_location: torch.device | str | None = None):
    """Read a model written by :func:`save_model` onto ``map_location`` (default CPU).

    Raises:
        ValueError: the file is not a gmmpyro model, is of another format version, or
            its tensors do not match the architecture its header describes.
    """
    from .model import DensityModel
    from .training import TrainingHistory

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable gmmpyro model file: {error}") from error
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gmmpyro DensityModel file (format {header.get('format')!r})")
    version = header.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ValueError(
            f"{path} has model format version {version} (written by gmmpyro "
            f"{header.get('gmmpyro_version', '?')}); this gmmpyro reads version {FORMAT_VERSION}"
        )
    config = json.loads(header["config"])
    model = DensityModel(
        [Observable.from_dict(o) for o in config["observables"]],
        config["params"],
        config=NetworkConfig.from_dict(config["network"]),
        order=config["order"],
        dtype=getattr(torch, config["dtype"]),
    )
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: tensors do not match the architecture in its header: {error}") from error
    projection_tensors = {
        k.removeprefix("projection."): v for k, v in tensors.items() if k.startswith("projection.")
    }
    model.set_projection(LatentProjection.from_config(config["projection"], projection_tensors))
    if config.get("history") is not None:
        model.history = TrainingHistory.from_dict(config["history"])
    model.eval()
    return model.to(map_location) if map_location is not None else model
