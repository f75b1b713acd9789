"""Atomic checkpoint files: a crash mid-write never leaves a truncated checkpoint behind."""

from __future__ import annotations

from pathlib import Path

import torch

from sstkd.atomic import atomic_file
from sstkd.errors import MissingFileError, ModelMismatchError, UnreadableFileError, restore_or_rebuild
from sstkd.models.segmenter import NetworkConfig


def atomic_save(payload: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    with atomic_file(path) as temporary, temporary.open("wb") as stream:
        torch.save(payload, stream)  # a file object: torch then keeps the OSError (e.g. disk full) as the cause


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", fix: str | None = None) -> dict:
    """Load with ``weights_only=True``: a checkpoint can carry tensors and plain data, never code.

    ``fix``: what the user should do about a missing or unreadable file (default: restore it or rebuild it)."""
    path = Path(path)
    fix = fix or restore_or_rebuild(path, None)
    if not path.is_file():
        raise MissingFileError("no checkpoint", path, fix)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means an unusable file
        reason = str(error).split(". ")[0].split("\n")[0]  # torch's first sentence; the rest is its own advice
        raise UnreadableFileError(f"not a readable sstkd checkpoint, truncated or corrupt ({reason})", path,
                                  fix) from error


def check_architecture(checkpoint: dict, expected_network: dict, num_classes: int, source: str) -> None:
    """Fail with a clear message when a checkpoint was made for another network or class count."""
    found = checkpoint.get("network")
    if found is None or "state_dict" not in checkpoint:
        raise ValueError(f"{source}: not an sstkd model checkpoint (keys: {sorted(checkpoint)[:8]})")
    # Keys added to the network's schema later are compared at their default (what older checkpoints used).
    defaults = {name: field.default for name, field in NetworkConfig.model_fields.items()}
    differences = {k: (found.get(k, defaults.get(k)), v) for k, v in expected_network.items()
                   if k != "backbone_weights" and found.get(k, defaults.get(k)) != v}
    if differences or checkpoint.get("num_classes") != num_classes:
        details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differences.items())
        if checkpoint.get("num_classes") != num_classes:
            details += f"{', ' if details else ''}num_classes: checkpoint {checkpoint.get('num_classes')} vs data {num_classes}"
        raise ModelMismatchError(f"{source} was trained for another architecture ({details})")
