"""Checkpoint files of the explained models: fetch, copy, verify and load without executing pickles."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from eea_repro.workflow.io import atomic_path, write_json


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


KEY_MAP_BY_ORDER = "by_order"
# BatchNorm's step counters: not weights (eval mode never reads them), and often absent from converted files
_COUNTERS = "num_batches_tracked"


def convert_state_dict(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], key_map=None,
                       source: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """``state``'s tensors under the names of ``reference`` (a timm network's state dict; only names and shapes are
    read, so a meta-device network will do).

    ``key_map``: None (the names already match), a mapping of name prefixes (old -> new, the longest matching prefix
    wins), or ``"by_order"``: the i-th tensor of ``state`` becomes the i-th tensor of ``reference`` (BatchNorm step
    counters left out on both sides), checked tensor by tensor for shape. Whatever does not fit is one error line
    naming the first keys at fault.
    """
    weights = {name: tensor for name, tensor in state.items() if not name.endswith(_COUNTERS)}
    wanted = {name: tensor for name, tensor in reference.items() if not name.endswith(_COUNTERS)}
    if key_map == KEY_MAP_BY_ORDER:
        if len(weights) != len(wanted):
            raise ValueError(f"{source}: {len(weights)} tensors, but the model has {len(wanted)} "
                             f"(key_map: {KEY_MAP_BY_ORDER} pairs them one to one)")
        pairs = list(zip(weights, wanted))
        wrong = [(old, new) for old, new in pairs if weights[old].shape != wanted[new].shape]
        if wrong:
            old, new = wrong[0]
            raise ValueError(f"{source}: tensor {old!r} {tuple(weights[old].shape)} does not fit the model's {new!r} "
                             f"{tuple(wanted[new].shape)} ({len(wrong)} of {len(pairs)} pairs differ in shape)")
        return {new: weights[old] for old, new in pairs}
    if key_map:
        prefixes = sorted(key_map, key=len, reverse=True)

        def renamed(name: str) -> str:
            prefix = next((p for p in prefixes if name.startswith(p)), None)
            return name if prefix is None else key_map[prefix] + name[len(prefix):]

        weights = {renamed(name): tensor for name, tensor in weights.items()}
    missing = [name for name in wanted if name not in weights]
    unexpected = [name for name in weights if name not in wanted]
    misshapen = [name for name in wanted if name in weights and weights[name].shape != wanted[name].shape]
    if missing or unexpected or misshapen:
        parts = [f"{label} {names[:3]}" for label, names in (("missing", missing), ("unexpected", unexpected),
                                                              ("wrong shape", misshapen)) if names]
        raise ValueError(f"{source}: does not fit the model ({'; '.join(parts)}); set "
                         f"models.<name>.checkpoint.key_map to a prefix mapping or to {KEY_MAP_BY_ORDER}")
    return {name: weights[name] for name in wanted}


def import_local_checkpoint(source: str | Path, destination: str | Path, expected_sha256: str | None,
                            reference: dict[str, torch.Tensor] | None = None, key_map=None) -> str:
    """Copy a user-supplied checkpoint into the results tree as safetensors, checking its recorded sha256; with a
    ``reference`` state dict its tensors are renamed to the model's names (:func:`convert_state_dict`), and a
    safetensors file that needs no renaming is checked against it and copied byte for byte."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"checkpoint file not found: {source}")
    if expected_sha256:
        actual = sha256_of(source)
        if actual != expected_sha256.lower():
            raise ValueError(f"{source}: sha256 {actual} does not match the configured {expected_sha256}")
    if source.suffix == ".safetensors" and key_map is None:
        if reference is not None:  # names and shapes checked here, so that a misfit names the user's file
            convert_state_dict(load_state_dict(source), reference, None, source)
        with atomic_path(destination) as tmp:
            shutil.copyfile(source, tmp)
        return sha256_of(destination)
    state = load_state_dict(source)
    if reference is not None:
        state = convert_state_dict(state, reference, key_map, source)
    return save_state_dict(state, destination)
