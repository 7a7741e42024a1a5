"""Training checkpoints: save after every epoch, resume an interrupted run (tensors + JSON only)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

__all__ = ["TrainingCheckpoint"]

_FILE = "checkpoint.safetensors"
_FORMAT = "gmmpyro.TrainingCheckpoint"
_VERSION = 1


def _fingerprint(model, x, theta, weights, config) -> str:
    digest = hashlib.sha256()
    for tensor in (x, theta, weights):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    setup = {
        "config": {k: v for k, v in asdict(config).items() if k != "max_epochs"},
        "network": model.config.to_dict(),
        "observables": [o.to_dict() for o in model.observables],
        "params": list(model.params),
        "order": list(model.order),
    }
    digest.update(json.dumps(setup, sort_keys=True).encode())
    return digest.hexdigest()


class TrainingCheckpoint:
    """The checkpoint of one training run in ``directory`` (created if missing).

    The checkpoint is bound to the data and settings by a SHA-256 fingerprint, so resuming
    with other data fails loudly instead of silently mixing two runs; ``max_epochs`` is left
    out of it, so an ended run can be continued with a larger one. It is written to a
    temporary file and renamed, so an interruption while saving leaves the previous one.
    """

    def __init__(self, directory, model, x, theta, weights, config) -> None:
        if not config.joint:
            raise ValueError("checkpoint_dir needs TrainingConfig(joint=True)")
        self.path = Path(directory) / _FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fingerprint = _fingerprint(model, x, theta, weights, config)

    def save(self, trainer, history, epoch: int) -> None:
        tensors = {f"model.{k}": v for k, v in trainer.model.networks.state_dict().items()}
        for position, state in enumerate(trainer.best_state):
            tensors.update({f"best.{position}.{k}": v for k, v in state.items()})
        for index, state in trainer.optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
        meta = {
            "fingerprint": self.fingerprint,
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

    def resume(self, trainer, history) -> int:
        """Load the saved state into ``trainer`` and ``history``; return the next epoch (0 if none)."""
        if not self.path.exists():
            return 0
        with safe_open(self.path, framework="pt") as handle:
            header = handle.metadata() or {}
            if header.get("format") != _FORMAT or header.get("format_version") != str(_VERSION):
                raise ValueError(
                    f"{self.path} is not a gmmpyro training checkpoint of format version {_VERSION}"
                )
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        meta = json.loads(header["state"])
        if meta["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"the checkpoint in {self.path.parent} belongs to other data or settings; "
                "use another checkpoint_dir or delete it"
            )
        device = trainer.model.device

        def prefixed(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}

        trainer.model.networks.load_state_dict(prefixed("model."))
        trainer.best_state = [prefixed(f"best.{p}.") for p in range(trainer.d)]
        state = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
        optimizer_state = trainer.optimizer.state_dict()
        optimizer_state["state"] = state
        for group, lr in zip(optimizer_state["param_groups"], meta["lr"], strict=True):
            group["lr"] = lr
        trainer.optimizer.load_state_dict(optimizer_state)
        for name in ("best", "best_epoch", "bad_epochs", "lr_bad_epochs", "active"):
            setattr(trainer, name, list(meta[name]))
        for key, value in meta["history"].items():
            setattr(history, key, value)
        return meta["epoch"] + 1
