"""Atomic file output and the map shard format shared by every map-producing rule."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path and rename it onto ``path`` only if the block succeeds.

    A killed job therefore never leaves a partial file that looks finished to Snakemake or to a reader.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
