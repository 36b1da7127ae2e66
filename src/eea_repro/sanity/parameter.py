"""The parameter-randomization stage (Adebayo et al. 2018; the seed's Section 3, Figs. 2-5): the images every check
explains, every method's maps on each randomized model (:mod:`.randomization` makes the models), their similarity to
the original model's maps, and the grids."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from eea_repro.data.files import read_label_file
from eea_repro.data.loading import subset_by_count
from eea_repro.workflow.io import atomic_path, gather_maps, load_map_shard, save_map_shard, write_json
from eea_repro.workflow.logs import progress
from eea_repro.models.memory import gradient_chunk
from eea_repro.models.network import ModelSpec, resolve_device
from eea_repro.sanity.randomization import randomization_layers, settings_model
from eea_repro.sanity.runs import ORIGINAL, layer_kinds, parse_run, parse_setting
from eea_repro.sanity.similarity import MapStack, stack_hog_similarity, stack_spearman, stack_ssim

# --- images ------------------------------------------------------------------------------------------------------


def sanity_image_rows(split_file, n_images: int, seed: int) -> list[int]:
    """Rows (in the evaluated split) of the images every sanity check explains: a seeded sample, sorted."""
    count = len(read_label_file(split_file))
    return subset_by_count(count, min(n_images, count), seed)


def grid_image_rows(split_file, sanity_cfg: dict, seed: int) -> list[int]:
    """Rows of the images in the sanity grids: the first ``sanity.grid_images`` of the sanity sample."""
    return sanity_image_rows(split_file, sanity_cfg["n_images"], seed)[: sanity_cfg["grid_images"]]


# --- stage: maps of every method on one randomized model ---------------------------------------------------------


def _refit_explainer(model_cfg, explainer_cfg, scoring, randomized, image_root, train_file, val_file,
                     classes_file, seed, device):
    """Pretrain a fresh explainer against the randomized model, started from its weights (as for the original). A
    one-epoch re-fit keeps its only epoch, so it skips the validation pass that would choose among epochs."""
    from eea_repro.explainer.network import MaskExplainer
    from eea_repro.explainer.stage import fit_explainer
    from eea_repro.workflow.io import read_classes
    from eea_repro.workflow.numerics import seed_everything

    seed_everything(seed)
    state = {name.removeprefix("net."): tensor for name, tensor in randomized.state_dict().items()}
    explainer = MaskExplainer(ModelSpec.from_config(model_cfg), state, len(read_classes(classes_file))).to(device)
    with tempfile.TemporaryDirectory() as scratch:
        record = fit_explainer(explainer, randomized, model_cfg, explainer_cfg, scoring, image_root,
                               train_file, val_file, classes_file, variant="target", resume_dir=scratch, seed=seed,
                               device=device, validate=explainer_cfg["epochs"] > 1)
    history = record["history"]
    print(f"re-pretrained explainer: kept epoch {history['best_epoch']} of {explainer_cfg['epochs']}, "
          f"val POS {history['best_val_pos']:.3f} (NaN: not validated)")
    return explainer


def load_sanity_images(image_root, split_file, model_cfg, classes_file, n_images: int, seed: int, device):
    """The sanity images (a seeded sample of the evaluated split) with their labels and ids, on ``device``."""
    from eea_repro.data.loading import load_tensors, open_split

    rows = sanity_image_rows(split_file, n_images, seed)
    images, labels, ids = load_tensors(open_split(image_root, split_file, model_cfg, classes_file, rows),
                                       desc="sanity images")
    return images.to(device), labels.to(device), ids


def save_predictions(model, images, labels, ids, out_csv, batch_size: int) -> None:
    """The model's class for each sanity image: how much of the model's function a randomization left intact (maps
    of a model that still classifies should stay similar)."""
    from eea_repro.models.training import predict

    predicted, labels = predict(model, images, batch_size), labels.cpu()
    print(f"the model predicts the label of {(predicted == labels).float().mean().item():.1%} of the sanity images")
    frame = pd.DataFrame({"image_id": ids, "label": labels.numpy(), "predicted": predicted.numpy()})
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)


@dataclass(frozen=True)
class Smoothing:
    """Smooth MPRT's maps: ``samples`` per image (``samples`` - 1 noisy copies and the clean image), noise of
    σ = ``noise`` x the image's range, each image's drawn from ``seed`` and its place in the sanity sample."""

    samples: int
    noise: float
    seed: int


def save_method_maps(methods, model, images, labels, ids, out_maps: dict, *, explainer, eea_settings, ties, seed,
                     precision, batch_size, reference_maps: dict | None = None,
                     smoothing: Smoothing | None = None) -> None:
    """Every method's maps of the sanity images for their ground-truth class, one map file per method (the map
    methods on the model's inference layout, EEA fine-tuned against the model as it is). A method in
    ``reference_maps`` (method -> map shards of this model for the ground truth) is read from them instead; with
    ``smoothing``, each map is Smooth MPRT's average over noisy copies."""
    from eea_repro.models.network import for_inference
    from eea_repro.workflow.names import EEA_METHODS

    inference = for_inference(model)
    settings = {"explainer": explainer, "eea_settings": eea_settings, "seed": seed, "precision": precision,
                "batch_size": batch_size}
    for method in progress()(methods, desc="methods"):
        net = model if method in EEA_METHODS else inference
        if method in (reference_maps or {}):
            maps = _reference_maps(reference_maps[method], ids, labels, method)
        elif smoothing is not None:
            maps = smoothed_method_maps(method, net, images, labels, smoothing, ties=ties, **settings).cpu().numpy()
        else:
            maps = method_maps(method, net, images, labels, ties=ties, **settings).cpu().numpy()
        save_map_shard(out_maps[method], maps, ids, labels.cpu().numpy(), labels.cpu().numpy(), method)


def smoothed_method_maps(method: str, model: nn.Module, images: torch.Tensor, classes: torch.Tensor,
                         smoothing: Smoothing, *, ties: torch.Tensor | None = None, batch_size: int = 64,
                         **settings) -> torch.Tensor:
    """Smooth MPRT's maps (B, h, w) of one method (:func:`eea_repro.sanity.mprt.smoothed_maps`), ``images`` being
    the sanity sample in order: as many images at a time as their noisy copies fit in the memory budget, the copies
    explained ``batch_size`` at a time as :func:`method_maps` explains images."""
    from eea_repro.models.memory import memory_budget
    from eea_repro.sanity.mprt import image_noise, smoothed_maps

    copies = smoothing.samples - 1
    per_image = 2 * (copies + 1) * images[0].numel() * images.element_size()  # the noise and the noisy copies
    group = max(1, memory_budget(images.device) // per_image)
    maps = []
    for start in range(0, len(images), group):
        part = slice(start, start + group)
        noise = image_noise(smoothing.seed, range(start, min(start + group, len(images))), copies, images.shape[1:],
                            images.device).to(images.dtype)
        part_classes, part_ties = classes[part], None if ties is None else ties[part]

        def explain(batch, rows, part_classes=part_classes, part_ties=part_ties):
            return method_maps(method, model, batch, part_classes[rows], batch_size=batch_size,
                               ties=None if part_ties is None else part_ties[rows], **settings)

        maps.append(smoothed_maps(explain, images[part], noise, smoothing.noise, chunk=batch_size))
    return torch.cat(maps)


def _reference_maps(map_files, ids, labels, method: str) -> np.ndarray:
    """The evaluated maps of the sanity images, checked to explain their ground truth."""
    gathered = gather_maps(map_files, ids, method)
    if not np.array_equal(gathered["classes"], labels.cpu().numpy()):
        raise ValueError(f"{method}: the maps in {map_files[0]} ... do not explain the sanity images' labels")
    return gathered["maps"]


def method_maps(method: str, model: nn.Module, images: torch.Tensor, classes: torch.Tensor, *, explainer=None,
                eea_settings: dict | None = None, ties: torch.Tensor | None = None, seed: int, precision: str = "fp32",
                batch_size: int = 64):
    """Maps (B, h, w) of one method for a batch; eea / peea use ``explainer`` (fine-tuned with ``eea_settings``, its
    POS selection breaking ties by ``ties``)."""
    from eea_repro.explainer.finetuning import finetune_maps
    from eea_repro.explainer.network import explain
    from eea_repro.methods import compute_maps
    from eea_repro.metrics.engine import autocast

    if method == "peea":
        return explain(explainer, images)
    if method == "eea":
        return finetune_maps(explainer, model, images, classes, **eea_settings, ties=ties)[0]
    batch_size = gradient_chunk(model, batch_size, images.shape[-1], images.device)
    chunks = []
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        with autocast(images.device, precision):
            # clone: gradient methods index with the classes under autograd
            chunks.append(compute_maps(method, model, images[part], classes[part].clone(), seed=seed + start).float())
    return torch.cat(chunks)


def make_sanity_maps(settings, methods, model_cfg, sanity_cfg, explainer_cfg, finetune_cfg, scoring,
                     checkpoint, explainer_file, image_root, split_file, explainer_train_file, explainer_val_file,
                     classes_file, out_maps: dict, out_predictions: dict, resume_dirs: dict, *, seed, device,
                     precision, batch_size, reference_maps: dict | None = None, training_seed: int | None = None) -> None:
    """Maps of every method in ``methods`` on the sanity images for each randomized model in ``settings``, and that
    model's predicted class of each image: ``out_maps[setting][method]``, ``out_predictions[setting]`` (a seed
    replicate's job gives no predictions: its randomized models are the run's).

    ``seed`` draws the images and the randomized weights; ``training_seed`` (default: ``seed``; a seed replicate's
    own) the EEA re-fits and the seeded methods' maps.

    Class explained: the ground truth ('target' variant) for every method. EEA is re-fitted against the randomized
    model (``sanity.eea_refit``); pEEA is the explainer EEA starts from (the original one under ``finetune``: no
    re-fit, so it cannot react to the randomization).

    Several settings share one job (``sanity.settings_per_job``) so that imports, the model and the images are loaded
    once; each setting starts from the same seeded state, so its files are the same bits whichever job makes them. A
    finished setting is kept in ``resume_dirs[setting]`` (with a fingerprint of this call) until the whole job is done:
    a killed job skips the settings it finished.

    The original model's maps are the evaluated 'target' maps of the sanity images (the same computation): methods in
    ``reference_maps`` (method -> those map shards) are read from them, not made again.
    """
    from eea_repro.models.network import load_model
    from eea_repro.workflow.numerics import seed_everything

    device = resolve_device(device)
    training_seed = seed if training_seed is None else training_seed
    fingerprint = _job_fingerprint(
        [methods, model_cfg, sanity_cfg, explainer_cfg, finetune_cfg, scoring, seed, str(device), precision, batch_size,
         *([training_seed] if training_seed != seed else [])],
        [checkpoint, explainer_file, split_file, explainer_train_file, explainer_val_file, classes_file,
         *(path for paths in (reference_maps or {}).values() for path in paths)])
    shared = None
    for setting in progress()(settings, desc="randomized models"):
        resume = Path(resume_dirs[setting])
        if _finished(resume, fingerprint):
            print(f"{setting}: finished by an earlier, interrupted job; taken from {resume}")
        else:
            if shared is None:
                original = load_model(model_cfg, checkpoint, classes_file, device)
                images, labels, ids = load_sanity_images(image_root, split_file, model_cfg, classes_file,
                                                         sanity_cfg["n_images"], seed, device)
                shared = original, images, labels, ids
            seed_everything(training_seed)
            shutil.rmtree(resume, ignore_errors=True)
            predictions = resume / Path(out_predictions[setting]).name if setting in out_predictions else None
            _setting_maps(setting, methods, *shared, model_cfg, sanity_cfg, explainer_cfg, finetune_cfg, scoring,
                          explainer_file, image_root, explainer_train_file, explainer_val_file, classes_file,
                          {method: resume / Path(path).name for method, path in out_maps[setting].items()},
                          predictions, seed=seed, training_seed=training_seed, precision=precision,
                          batch_size=batch_size, reference_maps=reference_maps if setting == ORIGINAL else None)
            write_json(resume / FINGERPRINT, {"fingerprint": fingerprint})
        for path in [*out_maps[setting].values(), *([out_predictions[setting]] if setting in out_predictions else [])]:
            with atomic_path(path) as tmp:
                shutil.copyfile(resume / Path(path).name, tmp)
    for setting in settings:
        shutil.rmtree(resume_dirs[setting], ignore_errors=True)


FINGERPRINT = "fingerprint.json"


def _job_fingerprint(arguments: list, files: list) -> str:
    """A digest of a sanity job's settings and of its input files' names, sizes and times: a resume folder written
    under any other is not reused."""
    stamp = [(str(f), Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    text = json.dumps([arguments, stamp], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _finished(resume: Path, fingerprint: str) -> bool:
    marker = resume / FINGERPRINT
    return marker.is_file() and json.loads(marker.read_text())["fingerprint"] == fingerprint


def _setting_maps(setting, methods, original, images, labels, ids, model_cfg, sanity_cfg, explainer_cfg,
                  finetune_cfg, scoring, explainer_file, image_root, explainer_train_file, explainer_val_file,
                  classes_file, out_maps: dict, out_predictions, *, seed, training_seed, precision, batch_size,
                  reference_maps=None) -> None:
    """One randomized model's predictions and every method's maps (see :func:`make_sanity_maps`)."""
    from eea_repro.explainer.network import load_explainer
    from eea_repro.explainer.stage import finetune_settings
    from eea_repro.metrics.pixel_order import scoring_ties
    from eea_repro.workflow.io import read_classes

    which = parse_setting(setting)[1] or layer_kinds(sanity_cfg, model_cfg["family"])[0]
    layers = randomization_layers(original, model_cfg["family"], which)
    model = settings_model(original, setting, layers, sanity_cfg, seed)
    print(f"{setting}: {len(layers)} {which} layers of {sum(map(len, layers))} parameter tensors; explaining {len(ids)} images")
    if out_predictions is not None:
        save_predictions(model, images, labels, ids, out_predictions, batch_size)

    explainer = None
    if {"eea", "peea"} & set(methods):
        if sanity_cfg["eea_refit"] == "pretrain" and parse_setting(setting)[2] > 1:  # a randomized model
            refit_cfg = {**explainer_cfg, "epochs": sanity_cfg["refit_epochs"] or explainer_cfg["epochs"]}
            explainer = _refit_explainer(model_cfg, refit_cfg, scoring, model, image_root,
                                         explainer_train_file, explainer_val_file, classes_file, training_seed,
                                         images.device)
        else:
            num_classes = len(read_classes(classes_file))
            explainer = load_explainer(ModelSpec.from_config(model_cfg), explainer_file, num_classes).to(images.device)
    smoothing = (Smoothing(sanity_cfg["smooth_samples"], sanity_cfg["smooth_noise"], seed)
                 if parse_setting(setting)[0] == "smooth" else None)
    save_method_maps(methods, model, images, labels, ids, out_maps, explainer=explainer,
                     eea_settings=finetune_settings(explainer_cfg, finetune_cfg, scoring),
                     ties=scoring_ties(scoring, ids, images.shape[-1], images.device), seed=training_seed,
                     precision=precision, batch_size=batch_size, reference_maps=reference_maps, smoothing=smoothing)


# --- stage: similarity of randomized maps to the original ones -------------------------------------------------


def similarity_frame(original: dict, randomized: dict, size: int, original_stack: MapStack | None = None,
                     randomized_stack: MapStack | None = None) -> pd.DataFrame:
    """Per-image similarities of two map shards (dicts from ``load_map_shard``) of the same images and method.

    ``original_stack`` / ``randomized_stack``: the shards' maps already prepared at ``size`` (a reference compared
    with many shards is prepared once); built here when not given.
    """
    if original["image_ids"] != randomized["image_ids"]:
        raise ValueError(f"{original['method']}: the randomized maps are of other images than the original ones")
    a = MapStack.at_size(original["maps"], size) if original_stack is None else original_stack
    b = MapStack.at_size(randomized["maps"], size) if randomized_stack is None else randomized_stack
    return pd.DataFrame({
        "image_id": original["image_ids"],
        "method": original["method"],
        "spearman": stack_spearman(a, b),
        "spearman_abs": stack_spearman(a, b, absolute=True),
        "ssim": stack_ssim(a, b),
        "hog": stack_hog_similarity(a, b),
        # Spread of the compared map: near 0 flags a collapsed (almost constant) map, whose ρ says little.
        "map_range": np.ptp(randomized["maps"].reshape(len(randomized["maps"]), -1), axis=1),
    })


def level_inputs(named_inputs, prefix: str = "level") -> dict[int, list[str]]:
    """Snakemake's named inputs '<prefix><k>' -> {k: files} (other inputs are ignored; a single file is a list of
    one)."""
    return {int(name[len(prefix):]): [files] if isinstance(files, str) else list(files)
            for name, files in named_inputs.items() if name.startswith(prefix) and name[len(prefix):].isdigit()}


def sanity_similarity(map_files: dict[int, list[str]], prediction_files: dict[int, str], run: str, input_size: int,
                      out_csv) -> None:
    """One row per image x method x level: similarity of the level's map to the original (level 1) map, and whether
    the level's model predicts the image's label (``model_correct``).

    ``map_files`` maps each level (1 = original) to its maps, one file per method; ``prediction_files`` each level to
    its model's predictions. Maps are compared at the model's input size (bilinear upsampling), where the metrics
    read them.
    """
    from eea_repro.sanity.mprt import discrete_entropy

    efficient = parse_run(run)[0] == "efficient"
    reference = {shard["method"]: shard for shard in map(load_map_shard, map_files[1])}
    reference_stacks = {method: MapStack.at_size(shard["maps"], input_size) for method, shard in reference.items()}
    frames = []
    for level in sorted(map_files):
        predictions = pd.read_csv(prediction_files[level], dtype={"image_id": str}).set_index("image_id")
        correct = predictions["predicted"] == predictions["label"]
        shards = reference.values() if level == 1 else map(load_map_shard, map_files[level])
        for shard in shards:
            method = shard["method"]
            stack = reference_stacks[method] if level == 1 else MapStack.at_size(shard["maps"], input_size)
            frame = similarity_frame(reference[method], shard, input_size, reference_stacks[method], stack)
            frame.insert(2, "level", level)
            frame["model_correct"] = correct.reindex(frame["image_id"]).to_numpy()
            if efficient:  # the map's discrete entropy at the input size (Quantus's complexity of a map)
                frame["entropy"] = discrete_entropy(torch.from_numpy(stack.maps)).numpy()
            frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if efficient:
        frame = _with_emprt(frame)
    frame.insert(0, "mode", run)  # the run: mode, and the layer granularity unless it is the family's first
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)


def _with_emprt(frame: pd.DataFrame) -> pd.DataFrame:
    """On the fully randomized level's rows, each image's eMPRT: the relative rise of its map's entropy from the
    original map's (Hedström et al.; :func:`eea_repro.sanity.mprt.relative_rise`)."""
    from eea_repro.sanity.mprt import relative_rise

    before = frame[frame["level"] == 1].set_index(["method", "image_id"])["entropy"]
    last = frame["level"] == frame["level"].max()
    original = before.reindex(pd.MultiIndex.from_frame(frame.loc[last, ["method", "image_id"]])).to_numpy(
        dtype=np.float64, copy=True)
    frame["emprt"] = np.nan
    after = frame.loc[last, "entropy"].to_numpy(dtype=np.float64, copy=True)
    frame.loc[last, "emprt"] = relative_rise(torch.from_numpy(original), torch.from_numpy(after)).numpy()
    return frame


def make_sanity_grid(map_files: dict[int, list[str]], method: str, model_cfg, sanity_cfg, image_root, split_file,
                     classes_file, out_paths, *, title, seed) -> None:
    """Fig. 3 / 5: rows = images (map and overlay), columns = randomization level, for one method."""
    from eea_repro.sanity.figures import randomization_grid
    from eea_repro.data.loading import pick_images
    from eea_repro.figures.qualitative import figure_maps
    from eea_repro.workflow.io import read_classes

    picked, images = pick_images(image_root, split_file, model_cfg, classes_file, grid_image_rows(split_file,
                                 sanity_cfg, seed))
    wanted = [item["image_id"] for item in picked]
    columns = {level: figure_maps(map_files[level], wanted, images.shape[-1], method) for level in sorted(map_files)}
    class_names = read_classes(classes_file)
    randomization_grid(images.numpy(), columns, [class_names[item["label"]] for item in picked], out_paths,
                       title=title)
