"""Checkpoint files of the explained models: fetch, copy, verify and load without executing pickles."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .io import atomic_path, write_json


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights from safetensors, or from a torch file with ``weights_only=True`` (a pickle is never run)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler's refusal is the message we want to show
        raise ValueError(f"{path}: refused to load (not a plain weights file): {error}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return state


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> str:
    """Write a safetensors file atomically and return its sha256."""
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp))
    return sha256_of(path)


def write_checkpoint_record(record_path: str | Path, checkpoint: str | Path, source: str, **extra) -> None:
    write_json(record_path, {"file": Path(checkpoint).name, "sha256": sha256_of(checkpoint), "source": source, **extra})


def import_local_checkpoint(source: str | Path, destination: str | Path, expected_sha256: str | None) -> str:
    """Copy a user-supplied checkpoint into the results tree as safetensors, checking its recorded sha256."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"checkpoint file not found: {source}")
    if expected_sha256:
        actual = sha256_of(source)
        if actual != expected_sha256.lower():
            raise ValueError(f"{source}: sha256 {actual} does not match the configured {expected_sha256}")
    if source.suffix == ".safetensors":
        with atomic_path(destination) as tmp:
            shutil.copyfile(source, tmp)
        return sha256_of(destination)
    return save_state_dict(load_state_dict(source), destination)


def download_pretrained(spec, pretrained_tag: str, num_classes: int, destination: str | Path) -> str:
    """Fetch pretrained weights through timm (Hugging Face hub) for a ``ModelSpec`` and store them as safetensors.

    Offline, timm raises a connection error deep inside the hub client; we turn it into one line naming the key to set.
    """
    from dataclasses import replace

    from .models import create_network

    tagged = replace(spec, timm_name=f"{spec.timm_name}.{pretrained_tag}")
    try:
        net = create_network(tagged, num_classes, pretrained=True)
    except Exception as error:
        raise RuntimeError(
            f"could not download pretrained weights for {tagged.timm_name!r} ({type(error).__name__}); offline runs "
            "must set models.<name>.checkpoint.source: file and models.<name>.checkpoint.path to a local weights file"
        ) from None
    return save_state_dict(net.state_dict(), destination)
