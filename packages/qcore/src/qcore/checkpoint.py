"""Atomic checkpoints: weights as safetensors, config and training state beside them.

A checkpoint is a directory::

    model.safetensors      the model's state dict
    config.json            the run's config (optional)
    training_state.pt      optimizer, scheduler, counters and RNG states (optional)
    checkpoint.json        manifest written last: format tag and SHA-256 of every file

The directory is assembled under a temporary name and renamed into place, so a reader sees a complete
checkpoint or none at all, even if the writer is killed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "capture_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT = "qcore-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING_STATE = "training_state.pt"


class CheckpointError(ValueError):
    """Raised for a missing, truncated, corrupt or foreign checkpoint."""


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    training_state: dict[str, Any] | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain_state_dict(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    # safetensors rejects tensors that share storage (tied weights), so every tensor gets its own copy.
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state.items()}


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Any = None,
    training_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically, replacing any checkpoint already at ``directory``.

    Args:
        directory: Target directory.
        model: A module or a state dict of tensors.
        config: A :class:`qcore.config.Config`, a plain mapping, or ``None``.
        training_state: Anything ``torch.save`` can store with ``weights_only`` loading: tensors, numbers,
            strings, lists, tuples and dicts (optimizer and scheduler state dicts, counters, RNG states).

    Returns:
        The checkpoint directory.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        safetensors.torch.save_file(_plain_state_dict(model), str(staging / WEIGHTS))
        files = [WEIGHTS]
        if config is not None:
            config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
            (staging / CONFIG).write_text(json.dumps(config_dict, indent=2, default=str), encoding="utf-8")
            files.append(CONFIG)
        if training_state is not None:
            torch.save(dict(training_state), staging / TRAINING_STATE)
            files.append(TRAINING_STATE)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "files": {name: _sha256(staging / name) for name in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _fsync_directory(staging)

        previous = None
        if directory.exists():
            previous = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, previous)
        os.replace(staging, directory)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _fsync_directory(path: Path) -> None:
    for child in path.iterdir():
        with child.open("rb") as handle:
            os.fsync(handle.fileno())


def load_checkpoint(directory: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying every file against its manifest.

    Raises:
        CheckpointError: The directory is missing, was not written by qcore, or a file is truncated or
            modified.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"checkpoint directory not found: {directory}. Pass the folder that contains {MANIFEST} "
            "(for example <run_dir>/checkpoints/last)."
        )
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{directory} is not a qcore checkpoint: {MANIFEST} is missing. If it contains a plain state dict, "
            "load it with torch.load and model.load_state_dict instead."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"corrupt manifest {manifest_path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a qcore checkpoint manifest (format tag missing)")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} has checkpoint format version {manifest.get('version')!r}; this qcore reads "
            f"version {FORMAT_VERSION}"
        )
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file missing: {path}; the checkpoint is incomplete")
        if _sha256(path) != expected:
            raise CheckpointError(
                f"checkpoint file {path} does not match its checksum (truncated or modified); "
                "use an earlier checkpoint or retrain"
            )

    state_dict = safetensors.torch.load_file(str(directory / WEIGHTS), device=str(map_location))
    config = None
    if (directory / CONFIG).is_file():
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    training_state = None
    if (directory / TRAINING_STATE).is_file():
        training_state = torch.load(directory / TRAINING_STATE, map_location=map_location, weights_only=True)
    return Checkpoint(path=directory, state_dict=state_dict, config=config, training_state=training_state)


def load_model_weights(model: nn.Module, source: str | Path, *, strict: bool = True) -> nn.Module:
    """Load weights from a checkpoint directory or a ``.safetensors`` file into ``model``.

    Raises:
        CheckpointError: The file is unreadable, or (with ``strict``) its keys or shapes do not match the
            model's; the message lists the differing keys.
    """
    source = Path(source)
    if source.is_dir():
        state_dict = load_checkpoint(source).state_dict
    elif source.is_file():
        try:
            state_dict = safetensors.torch.load_file(str(source))
        except Exception as error:  # safetensors raises its own error types for bad headers
            raise CheckpointError(f"cannot read weights from {source}: {error}") from None
    else:
        raise CheckpointError(f"weights not found: {source}")

    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        name for name in set(own) & set(state_dict) if own[name].shape != state_dict[name].shape
    )
    if strict and (missing or unexpected or mismatched):
        details = []
        if missing:
            details.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            details.append(f"unexpected keys: {_preview(unexpected)}")
        if mismatched:
            details.append(f"shape mismatch: {_preview(mismatched)}")
        raise CheckpointError(
            f"weights in {source} do not fit {type(model).__name__} ({'; '.join(details)}). "
            "Build the model with the same architecture and options as the run that saved them."
        )
    model.load_state_dict(state_dict, strict=False)
    return model


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Return ``<run_dir>/checkpoints/last`` if it is a complete checkpoint, else ``None``."""
    candidate = Path(run_dir) / "checkpoints" / "last"
    return candidate if (candidate / MANIFEST).is_file() else None


def capture_rng_state() -> dict[str, Any]:
    """Return Python, NumPy and PyTorch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state: Any = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state`."""
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
