"""Where each data split lives and how the evaluated images are sharded: the file plan the rules share.

Every dataset kind is described the same way: an image root plus one label file per split whose lines are
``<path relative to the image root> <label> [<label> ...]`` (the ImageNet-val label format), so one loader serves both.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

SPLITS_DIR = "results/data/splits"
EMBEDDED_ROOT = "results/data/embedded"


@dataclass(frozen=True)
class Plan:
    kind: str
    image_root: str
    classes_file: str
    n_eval: int
    shard_size: int

    @property
    def shards(self) -> list[str]:
        return [f"{index:04d}" for index in range(math.ceil(self.n_eval / self.shard_size))]

    def shard_range(self, shard: str) -> tuple[int, int]:
        start = int(shard) * self.shard_size
        return start, min(start + self.shard_size, self.n_eval)

    @staticmethod
    def split_label_file(split: str) -> str:
        return f"{SPLITS_DIR}/{split}.txt"


def plan_from_config(config: dict, cache_dir: str | Path | None = None) -> Plan:
    """The plan of a validated config. A folder dataset without ``eval_count`` evaluates every image the explainer
    splits leave; with ``dataset.on_bad_image: skip`` the bad ones are not counted, which takes a decode of every
    image, kept in ``cache_dir`` under the files' names, sizes and times (see :func:`.folder.usable_images`)."""
    from eea_repro.workflow.config import ConfigError

    dataset = config["dataset"]
    if dataset["kind"] == "embedded":
        plan = Plan(
            kind="embedded",
            image_root=EMBEDDED_ROOT,
            classes_file=f"{EMBEDDED_ROOT}/classes.txt",
            n_eval=dataset["embedded"]["counts"]["test"],
            shard_size=dataset["shard_size"],
        )
    elif dataset["kind"] == "folder":
        from eea_repro.data.folder import FOLDER_ROOT, IMAGES, folder_image_count

        folder = dataset["folder"]
        n_eval = folder["eval_count"]
        if n_eval is None:  # every image the explainer splits leave
            try:
                total = folder_image_count(folder, dataset["on_bad_image"] == "skip", cache_dir)
            except (OSError, ValueError) as error:  # an unreadable CSV or folder: the user's file, before any job
                raise ConfigError(f"config key 'dataset.folder': {error}") from None
            explainer = folder["explainer_train_count"] + folder["explainer_val_count"]
            n_eval = total - explainer if config["explainer"]["disjoint_from_eval"] else total
        plan = Plan(kind="folder", image_root=IMAGES, classes_file=f"{FOLDER_ROOT}/classes.txt", n_eval=n_eval,
                    shard_size=dataset["shard_size"])
    else:
        plan = Plan(
            kind="imagenet",
            image_root=config["imagenet_dir"],
            classes_file="results/data/imagenet_classes.txt",
            n_eval=dataset["imagenet"]["eval_count"],
            shard_size=dataset["shard_size"],
        )
    if plan.n_eval < 1:
        raise ConfigError(f"config key 'dataset.{dataset['kind']}': no image is left to evaluate ({plan.n_eval}) after "
                          "the explainer's train and val images; add images or lower their counts")
    return plan


def export_package_path(src_dir) -> None:
    """Let every job import this package from the workflow's ``src/``, also in per-rule conda envs and on cluster nodes."""
    current = os.environ.get("PYTHONPATH", "")
    paths = [str(src_dir), *(p for p in current.split(os.pathsep) if p and p != str(src_dir))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
