"""The explainer stage: pretrain the explainer of each variant, then the pEEA and EEA maps of one shard."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from eea_repro.data.loading import load_tensors, make_loader, open_split, shard_tensors
from eea_repro.methods.stage import naming_shard_images
from eea_repro.metrics.engine import classes_for_variant
from eea_repro.metrics.pixel_order import scoring_ties
from eea_repro.models.network import ModelSpec, load_model, resolve_device
from eea_repro.workflow.io import atomic_path, read_classes, save_map_shard, write_json
from eea_repro.workflow.logs import progress
from eea_repro.workflow.numerics import seed_everything


def pretrain_explainer(model_cfg, explainer_cfg, scoring, image_root, train_file, val_file, classes_file, checkpoint,
                       out_explainer, out_history, *, variant, resume_dir, seed, device, explainer_model_cfg=None,
                       explainer_checkpoint=None) -> None:
    """Pretrain the EEA explainer against the explained model; the explainer starts from the explained weights, or
    from another model's architecture and weights (``explainer_model_cfg``, ``explainer_checkpoint``: the paper's
    mixed architectures, Fig. 9)."""
    from eea_repro.models.checkpoints import load_state_dict
    from eea_repro.explainer.network import MaskExplainer, save_explainer

    seed_everything(seed)
    device = resolve_device(device)
    num_classes = len(read_classes(classes_file))
    explained = load_model(model_cfg, checkpoint, classes_file, device)
    explainer = MaskExplainer(ModelSpec.from_config(explainer_model_cfg or model_cfg),
                              load_state_dict(explainer_checkpoint or checkpoint), num_classes).to(device)
    record = fit_explainer(explainer, explained, model_cfg, explainer_cfg, scoring, image_root, train_file,
                           val_file, classes_file, variant=variant, resume_dir=resume_dir, seed=seed, device=device)
    sha = save_explainer(explainer, out_explainer)
    write_json(out_history, {"variant": variant, "sha256": sha, **record})


def pretrain_variant_explainers(model_cfg, explainer_cfg, scoring, image_root, train_file, val_file, classes_file,
                                checkpoint, out_explainers: dict[str, str], out_histories: dict[str, str],
                                resume_dirs: dict[str, str], *, seed, device) -> None:
    """Pretrain the explainer of each variant in ``out_explainers`` (variant -> file) in one job. When the explained
    model predicts every explainer-training image's label (:func:`explainer.predicted_as_labelled`), 'predicted'
    pretraining would repeat 'target' step for step, so the explainer is trained once and its file serves both (the
    history says which variant trained it)."""

    from eea_repro.explainer.pretraining import predicted_as_labelled

    variants = list(out_explainers)
    alike = False
    if {"target", "predicted"} <= set(variants):
        explained = load_model(model_cfg, checkpoint, classes_file, resolve_device(device))
        batches = ((batch["image"].to(resolve_device(device)), torch.as_tensor(batch["label"]))
                   for batch in make_loader(open_split(image_root, train_file, model_cfg, classes_file),
                                            explainer_cfg["batch_size"]))
        alike = predicted_as_labelled(explained, batches)
        print("the model predicts every explainer-training image's label: one explainer serves 'target' and "
              "'predicted'" if alike else "the model misses some explainer-training labels: one explainer per variant")
        variants = ["target", *(v for v in variants if v != "target")]
    for variant in variants:
        if alike and variant == "predicted":
            with atomic_path(out_explainers[variant]) as tmp:
                shutil.copyfile(out_explainers["target"], tmp)
            record = json.loads(Path(out_histories["target"]).read_text())
            write_json(out_histories[variant], {**record, "variant": variant, "trained_as": "target"})
            continue
        pretrain_explainer(model_cfg, explainer_cfg, scoring, image_root, train_file, val_file, classes_file,
                           checkpoint, out_explainers[variant], out_histories[variant], variant=variant,
                           resume_dir=resume_dirs[variant], seed=seed, device=device)


def fit_explainer(explainer, explained, model_cfg, explainer_cfg, scoring, image_root, train_file, val_file,
                  classes_file, *, variant, resume_dir, seed, device, validate: bool = True) -> dict:
    """Pretrain ``explainer`` in place against ``explained`` on the explainer splits (best epoch by val POS;
    ``validate=False``: the last epoch, without reading the validation split).

    Shared by the main explainers and the sanity checks' re-fits, so a re-fitted explainer is trained exactly as the
    original. Returns the history and the image counts.
    """
    from eea_repro.explainer.pretraining import pretrain

    train_set = open_split(image_root, train_file, model_cfg, classes_file)
    if validate:
        val_images, val_labels, val_ids = load_tensors(open_split(image_root, val_file, model_cfg, classes_file),
                                                       desc="val images")
    else:
        val_images, val_labels, val_ids = torch.empty(0), torch.empty(0, dtype=torch.long), []

    def train_batches(epoch: int):
        for batch in make_loader(train_set, explainer_cfg["batch_size"], shuffle=True, seed=seed + epoch):
            yield batch["image"].to(device), torch.as_tensor(batch["label"]).to(device)

    history = pretrain(
        explainer, explained, train_batches, val_images.to(device), val_labels.to(device),
        variant=variant, lam=explainer_cfg["lambda_size"], size_loss=explainer_cfg["size_loss"],
        lr=explainer_cfg["lr"], weight_decay=explainer_cfg["weight_decay"], epochs=explainer_cfg["epochs"],
        checkpoint_dir=resume_dir, progress=progress(), eval_batch_size=scoring["batch_size"],
        val_ties=scoring_ties(scoring, val_ids, val_images.shape[-1], device) if validate else None,
        validate=validate,
    )
    return {"history": history, "train_images": len(train_set), "val_images": len(val_labels)}


def finetune_settings(explainer_cfg: dict, finetune_cfg: dict, scoring: dict) -> dict:
    """``finetune_maps`` keyword arguments from the config, the same as for the evaluated EEA maps (the images' tie
    permutations, ``scoring_ties``, come with the images)."""
    return {
        "steps": finetune_cfg["steps"], "lr": finetune_cfg["lr"], "lam": explainer_cfg["lambda_size"],
        "size_loss": explainer_cfg["size_loss"], "early_stop_pos": finetune_cfg["early_stop_pos"],
        "weight_decay": explainer_cfg["weight_decay"], "chunk_size": finetune_cfg["chunk_size"],
        "metric_batch_size": scoring["batch_size"],
    }


def make_eea_maps(model_cfg, explainer_cfg, finetune_cfg, scoring, checkpoint, explainer_files: dict[str, str],
                  image_root, split_file, classes_file, out_maps: dict[str, dict[str, str]],
                  out_selection: dict[str, str] | None = None, *, shard_range, device, explainer_model_cfg=None,
                  stored_method=None, model_key="", timing_csv=None) -> None:
    """pEEA = the pretrained explainer's maps; EEA = per-image fine-tuning from it, batched across images. One job
    makes both for every variant (``explainer_files``: variant -> explainer; ``out_maps[method][variant]`` -> file,
    method "eea" and / or "peea"), loading the model and the images once; EEA's selected step per image goes to
    ``out_selection[variant]``, the seconds per method to ``timing_csv``.

    Variants whose explainer files hold the same bytes (a model that classifies every explainer-training image
    correctly trains one explainer for both) share its work: pEEA is made once, and EEA is fine-tuned once per
    (image, class), so only the images the model misclassifies are fine-tuned again. Fine-tuning is per image, so a
    map does not depend on the other images of its chunk: a shared map is the one a job per variant would make.

    An explainer of another architecture (``explainer_model_cfg``, paper Fig. 9) stores its EEA maps as
    ``stored_method``.
    """

    from eea_repro.models.checkpoints import sha256_of
    from eea_repro.explainer.network import load_explainer

    device = resolve_device(device)
    model = load_model(model_cfg, checkpoint, classes_file, device)
    num_classes = len(read_classes(classes_file))
    images, labels, ids = shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
    images, labels = images.to(device), labels.to(device)
    classes = {variant: classes_for_variant(model, images, labels, variant).clone() for variant in explainer_files}
    alike: dict[str, list[str]] = {}  # explainer file digest -> the variants it serves
    for variant, path in explainer_files.items():
        alike.setdefault(sha256_of(path), []).append(variant)
    explainers = [(load_explainer(ModelSpec.from_config(explainer_model_cfg or model_cfg), explainer_files[served[0]],
                                  num_classes).to(device), served) for served in alike.values()]
    settings = None
    if "eea" in out_maps:
        settings = {**finetune_settings(explainer_cfg, finetune_cfg, scoring),
                    "ties": scoring_ties(scoring, ids, images.shape[-1], device),
                    "selection_labels": labels if finetune_cfg["select_with"] == "label" else None}
    timings = []
    for method, paths in out_maps.items():
        started, computed = time.perf_counter(), 0
        stored = stored_method if method == "eea" and stored_method else method
        with naming_shard_images(method, shard_range, ids):
            for explainer, served in explainers:
                made = _shared_eea_maps(method, explainer, model, images,
                                        [(variant, classes[variant]) for variant in served if variant in paths],
                                        settings)
                for variant, (maps, info, fine_tuned) in made.items():
                    computed += fine_tuned
                    if info is not None:
                        with atomic_path(out_selection[variant]) as tmp:
                            pd.DataFrame({"image_id": ids, **{k: v.cpu().numpy() for k, v in info.items()}}).to_csv(
                                tmp, index=False)
                    save_map_shard(paths[variant], maps.cpu().numpy(), ids, classes[variant].cpu().numpy(),
                                   labels.cpu().numpy(), stored)
        timings.append({"model": model_key, "method": stored, "seconds": time.perf_counter() - started,
                        "images": len(ids) * len(paths), "computed": computed})
    if timing_csv is not None:
        with atomic_path(timing_csv) as tmp:
            pd.DataFrame(timings).to_csv(tmp, index=False)


def _shared_eea_maps(method, explainer, model, images, variant_classes, settings) -> dict:
    """One explainer's maps for the variants it serves: variant -> (maps, EEA's selection per image or None, images
    computed for it). pEEA is class-agnostic, so one pass serves every variant; EEA fine-tunes the first variant's
    (image, class) pairs and, for the others, only the images whose class differs."""
    from eea_repro.explainer.finetuning import finetune_maps
    from eea_repro.explainer.network import explain

    if method == "peea":
        maps = explain(explainer, images)
        return {variant: (maps, None, 0 if k else len(images)) for k, (variant, _) in enumerate(variant_classes)}

    def finetune(rows, classes):
        part = {k: v if v is None or k not in ("ties", "selection_labels") else v[rows] for k, v in settings.items()}
        return finetune_maps(explainer, model, images[rows], classes[rows], **part)

    made, reference = {}, None
    for variant, classes in variant_classes:
        if reference is None:
            maps, info = finetune(torch.arange(len(images), device=classes.device), classes)
            reference = classes, maps, info
            made[variant] = maps, info, len(images)
            continue
        first_classes, maps, info = reference
        rows = (classes != first_classes).nonzero().flatten()
        maps, info = maps.clone(), {k: v.clone() for k, v in info.items()}
        if len(rows):
            part_maps, part_info = finetune(rows, classes)
            maps[rows.to(maps.device)] = part_maps.to(maps.device)
            for k, v in part_info.items():
                info[k][rows.to(info[k].device)] = v.to(info[k].device)
        made[variant] = maps, info, len(rows)
    return made
