"""One function per workflow stage, with plain arguments: the scripts in ``scripts/`` only unpack Snakemake's object.

Keeping the stage logic here (not in the scripts) makes every stage importable and testable without Snakemake.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoints, numerics
from .data.files import read_label_file
from .data.loading import LabeledImageFolder, make_loader, subset_by_count
from .io import atomic_path, gather_maps, load_map_shard, read_classes, save_map_shard, write_json
from .logs import progress
from .metrics import classes_for_variant, normalize_maps
from .models import (ModelSpec, build_explained_model, compile_model, download_pretrained, for_inference,
                     reference_state, resolve_device)
from .paths import resolve
from .pixel_order import TieBreak
from .plan import EEA_LABELS


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_label(name: str) -> str:
    from .methods import METHODS

    return EEA_LABELS.get(name) or METHODS[name].label


def open_split(image_root, split_file, model_cfg: dict, classes_file, rows=None, mask_dir=None) -> LabeledImageFolder:
    """The images of a split (or of its ``rows``, in that order), resized to the model's input size."""
    return LabeledImageFolder(image_root, split_file, size=model_cfg["input_size"],
                              num_classes=len(read_classes(classes_file)), mask_dir=mask_dir, indices=rows)


def pick_images(image_root, split_file, model_cfg: dict, classes_file, rows, mask_dir=None):
    """The dataset items of a figure's ``rows`` and their images stacked (N, 3, size, size)."""
    dataset = open_split(image_root, split_file, model_cfg, classes_file, rows, mask_dir)
    items = [dataset[i] for i in range(len(dataset))]
    return items, torch.stack([item["image"] for item in items])


def load_tensors(dataset: LabeledImageFolder, batch_size: int = 64, desc: str = "loading images"):
    """All images of a (small) split as one tensor; used where a job needs its whole shard in memory anyway."""
    images, labels, ids = [], [], []
    for batch in progress()(make_loader(dataset, batch_size), desc=desc):
        images.append(batch["image"])
        labels.append(torch.as_tensor(batch["label"]))
        ids.extend(batch["image_id"])
    return torch.cat(images), torch.cat(labels), ids


def scoring_ties(scoring: dict, image_ids, size: int, device=None) -> torch.Tensor | None:
    """The tie permutations of these images under the run's tie rule, for POS scores outside the metric jobs (EEA's
    step selection, the explainer's validation): ``scoring`` = {"batch_size", "tie_break", "seed"}."""
    return TieBreak(scoring["tie_break"], scoring["seed"]).permutations(image_ids, size * size, device)


def load_model(model_cfg: dict, checkpoint, classes_file, device):
    return build_explained_model(
        ModelSpec.from_config(model_cfg), len(read_classes(classes_file)), checkpoint, device=device
    )


# --- checkpoints -------------------------------------------------------------------------------------------------


def train_explained_model(model_cfg, image_root, train_file, val_file, test_file, classes_file, out_checkpoint,
                          out_record, *, resume, seed, device) -> None:
    from .training import accuracy, train_classifier

    seed_everything(seed)
    device = resolve_device(device)
    spec = ModelSpec.from_config(model_cfg)
    train = load_tensors(open_split(image_root, train_file, model_cfg, classes_file), desc="train images")[:2]
    val = load_tensors(open_split(image_root, val_file, model_cfg, classes_file), desc="val images")[:2]
    settings = model_cfg["train"]
    state, history = train_classifier(
        spec, len(read_classes(classes_file)), train, val,
        epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
        weight_decay=settings["weight_decay"], seed=seed, device=device, resume_path=resume, progress=progress(),
    )
    checkpoints.save_state_dict(state, out_checkpoint)
    model = load_model(model_cfg, out_checkpoint, classes_file, device)
    test = load_tensors(open_split(image_root, test_file, model_cfg, classes_file), desc="test images")[:2]
    scores = {"val_accuracy": accuracy(model, *val), "test_accuracy": accuracy(model, *test)}
    checkpoints.write_checkpoint_record(out_record, out_checkpoint, "trained on the embedded train split",
                                        timm_name=spec.timm_name, history=history, numerics=numerics.run_mode(),
                                        machine=numerics.machine_record(device), **scores)
    Path(resume).unlink(missing_ok=True)
    print(f"saved {out_checkpoint} (val accuracy {scores['val_accuracy']:.3f}, test accuracy {scores['test_accuracy']:.3f})")


def fetch_checkpoint(model_cfg, classes_file, out_checkpoint, out_record) -> None:
    source = model_cfg["checkpoint"]
    n_classes = len(read_classes(classes_file))
    spec = ModelSpec.from_config(model_cfg)
    if source["source"] == "file":
        path = resolve(source["path"])
        checkpoints.import_local_checkpoint(path, out_checkpoint, source.get("sha256"),
                                            reference_state(spec, n_classes), source.get("key_map"))
        origin = f"local file {path.name}" + (f", key_map {source['key_map']}" if source.get("key_map") else "")
    else:
        download_pretrained(spec, source["pretrained_tag"], n_classes, out_checkpoint)
        if source.get("sha256") and checkpoints.sha256_of(out_checkpoint) != source["sha256"].lower():
            Path(out_checkpoint).unlink()
            raise ValueError(f"{out_checkpoint}: sha256 differs from models.*.checkpoint.sha256 {source['sha256']}")
        origin = f"timm {model_cfg['timm_name']}.{source['pretrained_tag']}"
    try:
        load_model(model_cfg, out_checkpoint, classes_file, "cpu")
    except Exception:
        Path(out_checkpoint).unlink(missing_ok=True)
        raise
    checkpoints.write_checkpoint_record(out_record, out_checkpoint, origin, timm_name=model_cfg["timm_name"],
                                        numerics=numerics.run_mode(), machine=numerics.machine_record("cpu"))
    print(f"saved {out_checkpoint} from {origin}")


# --- explainer ---------------------------------------------------------------------------------------------------


def pretrain_explainer(model_cfg, explainer_cfg, scoring, image_root, train_file, val_file, classes_file, checkpoint,
                       out_explainer, out_history, *, variant, resume_dir, seed, device, explainer_model_cfg=None,
                       explainer_checkpoint=None) -> None:
    """Pretrain the EEA explainer against the explained model; the explainer starts from the explained weights, or
    from another model's architecture and weights (``explainer_model_cfg``, ``explainer_checkpoint``: the paper's
    mixed architectures, Fig. 9)."""
    from .checkpoints import load_state_dict
    from .explainer import MaskExplainer, save_explainer

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
    import shutil

    from .explainer import predicted_as_labelled

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
    from .explainer import pretrain

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


# --- maps --------------------------------------------------------------------------------------------------------


def _shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range):
    return load_tensors(open_split(image_root, split_file, model_cfg, classes_file, range(*shard_range)),
                        desc="shard images")


@contextlib.contextmanager
def naming_shard_images(method: str, shard_range, image_ids) -> Iterator[None]:
    """A method that crashes on a shard fails the shard's job with one line naming its images (the original
    traceback stays chained above it in the log), so the culprits can be found among a few hundred images."""
    try:
        yield
    except Exception as error:
        reason = " ".join(str(error).split())
        raise RuntimeError(f"map method {method!r} failed on images {shard_range[0]}..{shard_range[1] - 1} of the "
                           f"evaluated split ({', '.join(image_ids)}): {type(error).__name__}: {reason}") from error


def finetune_settings(explainer_cfg: dict, finetune_cfg: dict, scoring: dict) -> dict:
    """``finetune_maps`` keyword arguments from the config, the same as for the evaluated EEA maps (the images' tie
    permutations, ``scoring_ties``, come with the images)."""
    return {
        "steps": finetune_cfg["steps"], "lr": finetune_cfg["lr"], "lam": explainer_cfg["lambda_size"],
        "size_loss": explainer_cfg["size_loss"], "early_stop_pos": finetune_cfg["early_stop_pos"],
        "weight_decay": explainer_cfg["weight_decay"], "chunk_size": finetune_cfg["chunk_size"],
        "metric_batch_size": scoring["batch_size"],
    }


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def unique_explanations(classes_per_variant: torch.Tensor, class_specific: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                          torch.Tensor]:
    """The distinct (image, class) pairs that the variants need, and where each variant's maps are among them.

    ``classes_per_variant`` is (V, N). Returns the pairs' image rows and classes, and a (V, N) index into the pairs.
    Where the prediction equals the ground truth the two variants share one map; a class-agnostic method needs one
    map per image whatever the class.
    """
    num_variants, num_images = classes_per_variant.shape
    rows = torch.arange(num_images).expand(num_variants, num_images)
    keys = rows * (int(classes_per_variant.max()) + 1) + classes_per_variant if class_specific else rows
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(unique_keys),), num_variants * num_images, dtype=torch.long)
    first.scatter_reduce_(0, inverse.flatten(), torch.arange(num_variants * num_images), reduce="amin")
    return rows.flatten()[first], classes_per_variant.flatten()[first], inverse


def make_baseline_maps(methods, model_cfg, checkpoint, image_root, split_file, classes_file,
                       out_maps: dict[str, dict[str, str]], *, shard_range, seed, device, precision, batch_size,
                       model_key="", timing_csv=None) -> None:
    """Maps of the registry ``methods`` for one shard, every variant (``out_maps[method][variant]`` -> file), in one
    job: the model and the images load once, and a map two variants share is computed once (``unique_explanations``).
    The seconds spent per method go to ``timing_csv`` (the report's per-method cost)."""
    import time

    from .methods import METHODS, compute_maps

    seed_everything(seed)
    device = resolve_device(device)
    model = for_inference(load_model(model_cfg, checkpoint, classes_file, device))
    images, labels, ids = _shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
    variants = list(next(iter(out_maps.values())))
    # clone: the classes come out of inference mode, and gradient methods index with them under autograd
    classes = torch.stack([classes_for_variant(model, images.to(device), labels.to(device), variant).cpu().clone()
                           for variant in variants])
    timings = []
    for method in methods:
        started = time.perf_counter()
        rows, pair_classes, index = unique_explanations(classes, METHODS[method].class_specific)
        print(f"{method}: {len(rows)} maps serve {len(variants)} variant(s) of {len(images)} images")
        maps = []
        with naming_shard_images(method, shard_range, ids):
            for start in progress()(range(0, len(rows), batch_size), desc=method):
                chunk = slice(start, start + batch_size)
                with _autocast(device, precision):
                    maps.append(compute_maps(method, model, images[rows[chunk]].to(device),
                                             pair_classes[chunk].to(device), seed=seed + shard_range[0] + start).cpu())
        maps = torch.cat(maps)
        for variant, variant_index, variant_classes in zip(variants, index, classes):
            save_map_shard(out_maps[method][variant], maps[variant_index].numpy(), ids, variant_classes.numpy(),
                           labels.numpy(), method)
        timings.append({"model": model_key, "method": method, "seconds": time.perf_counter() - started,
                        "images": len(ids) * len(variants), "computed": len(rows)})
    if timing_csv is not None:
        with atomic_path(timing_csv) as tmp:
            pd.DataFrame(timings).to_csv(tmp, index=False)


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
    import time

    from .checkpoints import sha256_of
    from .explainer import load_explainer

    device = resolve_device(device)
    model = load_model(model_cfg, checkpoint, classes_file, device)
    num_classes = len(read_classes(classes_file))
    images, labels, ids = _shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
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
    from .explainer import explain, finetune_maps

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


# --- metrics and tables ------------------------------------------------------------------------------------------


def evaluate_shard(model_cfg, metrics_cfg, checkpoint, map_files: list[tuple[str, str]], image_root, split_file,
                   classes_file, out_csv, *, shard_range, seed, device, precision, model_key="",
                   timing_csv=None) -> None:
    """Per-image metrics of every map file of one shard (``map_files``: (variant, path) pairs), in one job.

    The model, the images, their clean and black forwards and their tie permutations are loaded and computed once
    for all methods; a method's map that two variants share is scored once (:func:`metrics.score_variants`). Writes
    one row per (method, variant, image) to ``out_csv`` and per method the seconds spent, the rows served and the
    rows scored to ``timing_csv`` (the report's per-method cost; not a rule output, since timings differ between
    runs).
    """
    import time

    from .metrics import PER_IMAGE_COLUMNS, per_image_frame, prepare_shard, score_variants

    device = resolve_device(device)
    model = compile_model(for_inference(load_model(model_cfg, checkpoint, classes_file, device)),
                          metrics_cfg["compile"], device)
    images, labels, ids = _shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
    batch_size = metrics_cfg["batch_size"]
    ties = TieBreak(metrics_cfg["tie_break"], seed).permutations(ids, images.shape[-1] ** 2)
    shard = prepare_shard(model, images.to(device), labels, ties=ties, batch_size=batch_size, precision=precision)
    by_method: dict[str, dict[str, dict]] = {}
    for variant, path in map_files:
        maps = load_map_shard(path)
        if ids != maps["image_ids"]:
            raise ValueError(f"{path}: image ids do not match shard {shard_range} of {split_file}; rerun its map rule")
        by_method.setdefault(maps["method"], {})[variant] = maps | {"path": path}
    frames, timings = [], []
    for method, variants in progress()(by_method.items(), desc="methods"):
        started = time.perf_counter()
        results = score_variants(model, shard, {v: torch.from_numpy(m["maps"]) for v, m in variants.items()},
                                 ltx_code=metrics_cfg["ltx_code"], batch_size=batch_size, precision=precision)
        for variant, result in results.items():
            classes = shard.classes(variant)
            mismatched = int((classes.cpu().numpy() != variants[variant]["classes"]).sum())
            if mismatched:  # 'predicted' recomputes the top-1; another device or precision may flip near-ties
                print(f"warning: {mismatched} images are scored for another class than their map explains "
                      f"({variants[variant]['path']})")
            frame = per_image_frame(ids, shard, classes, result)
            frames.append(frame.assign(method=method, variant=variant)[["method", "variant", *PER_IMAGE_COLUMNS]])
            print(f"{method} ({variant}): {int((~frame['valid']).sum())} invalid maps, "
                  f"{int(frame['constant'].sum())} constant")
        timings.append({"model": model_key, "method": method, "seconds": time.perf_counter() - started,
                        "images": len(ids) * len(results),
                        "computed": int(sum(result["scored"].sum() for result in results.values()))})
    with atomic_path(out_csv) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    if timing_csv is not None:
        with atomic_path(timing_csv) as tmp:
            pd.DataFrame(timings).to_csv(tmp, index=False)


# --- figures -----------------------------------------------------------------------------------------------------


def figure_rows(split_file, figures_cfg: dict, seed: int) -> list[int]:
    """Row indices (in the evaluated split) of the images shown: the configured ids, else a seeded sample."""
    names = [Path(name).stem for name, _ in read_label_file(split_file)]
    if figures_cfg["image_ids"]:
        missing = [i for i in figures_cfg["image_ids"] if i not in names]
        if missing:
            raise ValueError(f"config key 'figures.image_ids': {missing[0]!r} is not an evaluated image ({split_file})")
        return [names.index(i) for i in figures_cfg["image_ids"]]
    return subset_by_count(len(names), min(figures_cfg["n_images"], len(names)), seed)


def figure_maps(map_files, image_ids, size: int, method: str | None = None) -> np.ndarray:
    """The maps of ``image_ids`` (in that order) from their shards, upsampled to ``size`` and min-max normalised."""
    gathered = gather_maps(map_files, image_ids, method)
    return normalize_maps(torch.from_numpy(gathered["maps"]), size)[0].numpy()


def make_qualitative_grid(map_files, model_cfg, figures_cfg, image_root, split_file, classes_file, out_paths, *,
                          title, seed, mask_dir=None) -> None:
    """Paper Figs. 1 and 11-16: images x methods; with ``mask_dir`` the image column outlines the object."""
    from .figures import qualitative_grid

    picked, images = pick_images(image_root, split_file, model_cfg, classes_file,
                                 figure_rows(split_file, figures_cfg, seed), mask_dir)
    row_of = {item["image_id"]: row for row, item in enumerate(picked)}
    columns: dict[str, np.ndarray] = {}
    explained = np.asarray([item["label"] for item in picked])
    for path in map_files:  # maps of one method may be spread over several shards
        shard = load_map_shard(path)
        hits = [(i, row_of[image_id]) for i, image_id in enumerate(shard["image_ids"]) if image_id in row_of]
        if not hits:
            continue
        source, rows = map(list, zip(*hits))
        maps, _valid, _constant = normalize_maps(torch.from_numpy(shard["maps"][source]), images.shape[-1])
        column = columns.setdefault(method_label(shard["method"]), np.zeros(images.shape[:1] + images.shape[2:], np.float32))
        column[rows] = maps.numpy()
        explained[rows] = shard["classes"][source]
    class_names = read_classes(classes_file)
    row_titles = [
        class_names[item["label"]]
        + ("" if explained[row] == item["label"] else f"\n(explains {class_names[explained[row]]})")
        for row, item in enumerate(picked)
    ]
    masks = np.stack([item["mask"][0].numpy() for item in picked]) if mask_dir is not None else None
    qualitative_grid(images.numpy(), columns, row_titles, out_paths, title=title, masks=masks)
