"""Atomic file output and the map shard format shared by every map-producing rule."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path and rename it onto ``path`` only if the block succeeds.

    A killed job therefore never leaves a partial file that looks finished to Snakemake or to a reader. The temporary
    file is created with mode 0666 minus the process umask, as a plain ``open`` would, so a shared results folder stays
    readable by the group (``mkstemp``'s 0600 would survive the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_classes(path: str | Path) -> list[str]:
    """The class names of a classes file, one per non-empty line."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def write_json(path: str | Path, payload) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def save_map_shard(path: str | Path, maps, image_ids, classes, labels, method: str) -> None:
    """Store maps at native resolution as float16 with the image ids and the classes they explain."""
    maps = np.asarray(maps, dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(
                stream,
                maps=maps.astype(np.float16),
                image_ids=np.asarray(image_ids, dtype=str),
                classes=np.asarray(classes, dtype=np.int64),
                labels=np.asarray(labels, dtype=np.int64),
                method=np.asarray(method),
            )


def load_map_shard(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as shard:
        return {
            "maps": shard["maps"].astype(np.float32),
            "image_ids": shard["image_ids"].tolist(),
            "classes": shard["classes"],
            "labels": shard["labels"],
            "method": str(shard["method"]),
        }


def gather_maps(map_files, image_ids, method: str | None = None) -> dict:
    """The maps of ``image_ids`` (in that order) gathered from shards, as ``load_map_shard`` returns them.

    A figure or a similarity picks a few images out of shards laid out for the metric jobs; with ``method`` only
    that method's shards are read, so ``map_files`` may hold every method's shards of a setting.
    """
    wanted = set(image_ids)
    found: dict[str, tuple[dict, int]] = {}
    for path in map_files:
        shard = load_map_shard(path)
        if method is not None and shard["method"] != method:
            continue
        for index, image_id in enumerate(shard["image_ids"]):
            if image_id in wanted:
                found[image_id] = (shard, index)
    missing = [image_id for image_id in image_ids if image_id not in found]
    if missing:
        of_method = f" of method {method!r}" if method is not None else ""
        raise ValueError(f"no map{of_method} of image {missing[0]!r} in {', '.join(map(str, map_files))}")
    picked = [found[image_id] for image_id in image_ids]
    return {
        "maps": np.stack([shard["maps"][index] for shard, index in picked]),
        "image_ids": list(image_ids),
        "classes": np.asarray([shard["classes"][index] for shard, index in picked]),
        "labels": np.asarray([shard["labels"][index] for shard, index in picked]),
        "method": picked[0][0]["method"],
    }


def kept(cache_dir: str | Path, name: str, key: object, compute: Callable[[], object]):
    """``compute()``'s JSON value, kept in ``cache_dir`` as ``<name>-<hash of key>.json`` and read from there when the
    key is the same. An unwritable ``cache_dir`` only means computing it again next time."""
    key_hash = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{name}-{key_hash}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        for old in Path(cache_dir).glob(f"{name}-*.json"):
            old.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(value))  # the value's key order is kept: rules' params compare it
    except OSError:
        pass
    return value
