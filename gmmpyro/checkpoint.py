"""Training checkpoints: save after every epoch, resume an interrupted run (tensors + JSON only)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .exceptions import TrainingError
from .training import TrainingHistory

__all__ = ["TrainingCheckpoint", "data_digests"]

_FILE = "checkpoint.safetensors"
_FORMAT = "gmmpyro.TrainingCheckpoint"
_VERSION = 2
# what each fingerprint part covers, in the words of the resume error
_PARTS = {
    "x": "the training events x",
    "theta": "the parameters θ of the events",
    "weights": "the event weights",
    "reference": "the reference events that define the projection (reference=)",
    "score": "the joint scores of the events (score=)",
    "score_weight": "the weight of the joint-score term (score_weight=)",
    "observables": "the observables (names, bounds, kinds)",
    "params": "the parameter names",
    "order": "the autoregressive order",
    "network": "the network settings (NetworkConfig, dtype and ensemble size)",
    "training": "the training settings (TrainingConfig other than max_epochs)",
}


def _tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (read on the CPU)."""
    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
    digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _json_digest(value) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def data_digests(x, theta, weights, mask, score=None) -> dict[str, str]:
    """SHA-256 digests of in-memory training data: the fingerprint parts ``x``, ``theta``, ``weights``, ``reference``.

    Arguments:
        x, theta, weights: the validated float64 training data, shapes ``(N, d)``, ``(N, k)``, ``(N,)``.
        mask: the reference events that define the projection, boolean, shape ``(N,)``.
        score: the joint scores ``(N, k)``, if any (then also the part ``score``).

    Example:
        >>> parts = data_digests(torch.ones(3, 4), torch.zeros(3, 2), torch.ones(3), torch.ones(3, dtype=torch.bool))
        >>> sorted(parts), len(parts["x"])
        (['reference', 'theta', 'weights', 'x'], 64)
    """
    digests = {
        "x": _tensor_digest(x),
        "theta": _tensor_digest(theta),
        "weights": _tensor_digest(weights),
        "reference": _tensor_digest(mask),
    }
    return digests if score is None else {**digests, "score": _tensor_digest(score)}


def _fingerprint_parts(model, data: dict[str, str], config) -> dict[str, str]:
    """SHA-256 digests, one per part, of everything that shapes a training run's result.

    ``max_epochs`` is left out, so an ended run can be continued with a larger one; the
    device is left out, so a run can be resumed on another one; so is the number of
    data-parallel processes, which compute the same steps as one.

    Arguments:
        model: the :class:`~gmmpyro.DensityModel` being trained.
        data: the digests of the training data (:func:`data_digests`, or those of streamed
            events, :class:`~gmmpyro.streaming.StreamedEvents`).
        config: the :class:`~gmmpyro.TrainingConfig`.

    Returns:
        ``{part: hex digest}`` for the parts named in the resume error.
    """
    # settings added later enter only when set, so that checkpoints written before them still resume
    training = {k: v for k, v in asdict(config).items() if k != "max_epochs" and not (k == "bootstrap" and not v)}
    network = {"config": model.config.to_dict(), "dtype": str(model.dtype)}
    if model.ensemble > 1:
        network["ensemble"] = model.ensemble
    return {
        **{part: digest for part, digest in data.items() if part in _PARTS},
        "observables": _json_digest([o.to_dict() for o in model.observables]),
        "params": _json_digest(list(model.params)),
        "order": _json_digest(list(model.order)),
        "network": _json_digest(network),
        "training": _json_digest(training),
    }


class TrainingCheckpoint:
    """The checkpoint of one training run in ``directory`` (created if missing).

    The checkpoint is bound to the run by the SHA-256 digests of :func:`_fingerprint_parts`,
    stored part by part, so resuming another run fails loudly, naming what differs, instead of
    silently mixing two runs. An existing checkpoint is read and checked on construction,
    before training changes the model. It is written to a temporary file and renamed, so an
    interruption while saving leaves the previous one. Only tensors (safetensors) and JSON are
    read, never pickle.

    Raises:
        ValueError: ``config.joint`` is off.
        TrainingError: ``directory`` holds a checkpoint of another run, of another format
            version, or one that cannot be read.
    """

    def __init__(self, directory, model, data: dict[str, str], config) -> None:
        if not config.joint:
            raise ValueError("checkpoint_dir needs TrainingConfig(joint=True)")
        self.path = Path(directory) / _FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.parts = _fingerprint_parts(model, data, config)
        self.saved = self._read(model.networks) if self.path.exists() else None

    def save(self, trainer, history, epoch: int) -> None:
        """Write the state of ``trainer`` and ``history`` after ``epoch``."""
        tensors = {f"model.{k}": v for k, v in trainer.model.networks.state_dict().items()}
        for position, state in enumerate(trainer.best_state):
            tensors.update({f"best.{position}.{k}": v for k, v in state.items()})
        for index, state in trainer.optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
        meta = {
            "parts": self.parts,
            "epoch": epoch,
            "best": trainer.best,
            "best_epoch": trainer.best_epoch,
            "bad_epochs": trainer.bad_epochs,
            "lr_bad_epochs": trainer.lr_bad_epochs,
            "active": trainer.active,
            "lr": [group["lr"] for group in trainer.optimizer.param_groups],
            "history": history.to_dict(),
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        partial = self.path.with_suffix(".partial")
        save_file(
            tensors,
            partial,
            metadata={"format": _FORMAT, "format_version": str(_VERSION), "state": json.dumps(meta)},
        )
        os.replace(partial, self.path)

    def _refuse(self, reason: str) -> TrainingError:
        return TrainingError(
            f"cannot resume from {self.path}: {reason}; use another checkpoint_dir or delete "
            f"{self.path.parent} to start afresh"
        )

    def _read(self, networks: torch.nn.ModuleList) -> tuple[dict, dict[str, torch.Tensor]]:
        """The saved state and tensors, checked against this run's fingerprint parts and ``networks``."""
        try:
            with safe_open(self.path, framework="pt") as handle:
                header = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except (OSError, SafetensorError) as error:
            raise self._refuse(f"it is not a readable safetensors file ({error})") from error
        if header.get("format") != _FORMAT:
            raise self._refuse("it is not a gmmpyro training checkpoint")
        if header.get("format_version") != str(_VERSION):
            raise self._refuse(
                f"it has checkpoint format version {header.get('format_version')}, this gmmpyro reads "
                f"version {_VERSION} (earlier versions do not record which data and settings they belong to)"
            )
        try:
            meta = json.loads(header.get("state", ""))
        except json.JSONDecodeError as error:
            raise self._refuse(f"its state is not valid JSON ({error})") from error
        if not isinstance(meta, dict) or not isinstance(meta.get("parts"), dict):
            raise self._refuse("its state has no fingerprint parts")
        differ = [_PARTS[part] for part in _PARTS if meta["parts"].get(part) != self.parts.get(part)]
        if differ:
            raise self._refuse(f"it belongs to other data or settings ({', '.join(differ)} differ)")
        _check_state(meta, len(networks), self._refuse)
        expected = [("model.", networks)] + [(f"best.{p}.", net) for p, net in enumerate(networks)]
        for prefix, module in expected:
            if _shapes(_prefixed(tensors, prefix)) != _shapes(module.state_dict()):
                raise self._refuse(f"its tensors {prefix}* do not fit the networks")
        return meta, tensors

    def resume(self, trainer, history) -> int:
        """Load the saved state into ``trainer`` and ``history``; return the next epoch (0 if none)."""
        if self.saved is None:
            return 0
        meta, tensors = self.saved
        device = trainer.model.device
        optimizer_state = trainer.optimizer.state_dict()
        try:
            optimizer_state["state"] = _optimizer_state(tensors, device)
            for group, lr in zip(optimizer_state["param_groups"], meta["lr"], strict=True):
                group["lr"] = lr
            trainer.optimizer.load_state_dict(optimizer_state)
        except (RuntimeError, ValueError, KeyError) as error:
            raise self._refuse(f"its optimiser state does not fit the networks ({error})") from error
        trainer.model.networks.load_state_dict(_prefixed(tensors, "model.", device))
        trainer.best_state = [_prefixed(tensors, f"best.{p}.", device) for p in range(trainer.d)]
        for name in ("best", "best_epoch", "bad_epochs", "lr_bad_epochs", "active"):
            setattr(trainer, name, list(meta[name]))
        for key, value in meta["history"].items():
            setattr(history, key, value)
        return meta["epoch"] + 1


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str, device=None) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with ``prefix``, keyed by the rest, on ``device``."""
    return {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}


def _optimizer_state(tensors: dict[str, torch.Tensor], device) -> dict[int, dict[str, torch.Tensor]]:
    """Adam's per-parameter state from the ``optim.<index>.<name>`` tensors (``step`` stays on the CPU)."""
    state = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    return state


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _check_state(meta: dict, d: int, refuse) -> None:
    """Raise ``refuse(reason)`` unless ``meta`` has the keys and types :meth:`TrainingCheckpoint.save` writes."""
    number, integer, boolean = ((int, float), "numbers"), (int, "integers"), (bool, "booleans")
    lists = {"best": number, "best_epoch": integer, "bad_epochs": integer, "lr_bad_epochs": integer}
    for key, (kind, kind_name) in {**lists, "active": boolean, "lr": number}.items():
        value = meta.get(key)
        if not isinstance(value, list) or len(value) != d or not all(isinstance(v, kind) for v in value):
            raise refuse(f"its state's {key!r} is not a list of {d} {kind_name}")
    if not isinstance(meta.get("epoch"), int) or meta["epoch"] < 0:
        raise refuse("its state's 'epoch' is not an integer >= 0")
    names = {f.name for f in fields(TrainingHistory)}
    if not isinstance(meta.get("history"), dict) or set(meta["history"]) != names:
        raise refuse(f"its state's 'history' does not have the fields {sorted(names)}")
