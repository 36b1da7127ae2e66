"""Data-randomization sanity check (Adebayo et al. 2018; the seed's Section 3.2, Figs. 6-8).

The explained architecture is trained on train images whose labels are a seeded permutation of their true labels,
until it fits them (training accuracy above ``data_randomization.target_train_accuracy``): it memorises, so its test
accuracy is near chance. An EEA explainer is pretrained against this permuted-label model exactly as against the
original one, and every configured method explains the sanity images (the ground-truth class, as the parameter
randomization checks do) on both models. A method that explains the model should give different maps: the per-image
Spearman ρ between the two maps is the test statistic (box plot, Fig. 6).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eea_repro.figures.grids import qualitative_grid
from eea_repro.workflow.io import atomic_path, gather_maps, load_map_shard
from eea_repro.workflow.logs import progress


# --- the permuted-label model ------------------------------------------------------------------------------------


def permuted_labels(labels: Sequence[int], seed: int) -> np.ndarray:
    """The labels shuffled across images by a seeded permutation: the class counts stay, the image-label link goes."""
    labels = np.asarray(labels, dtype=np.int64)
    return labels[np.random.default_rng(seed).permutation(len(labels))]


def fit_until_memorised(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    target_accuracy: float,
    max_epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    resume_path: str | Path,
    run_settings: dict | None = None,
    progress=None,
    log=print,
) -> list[dict]:
    """Train ``model`` on (images, labels) until its clean training accuracy exceeds ``target_accuracy``.

    Not :func:`training.train_classifier`: memorising needs the *last* weights (not the best validation epoch), a
    stop as soon as the training set is fitted (not a fixed schedule) and no augmentation. AdamW at a constant
    learning rate; the accuracy is measured after each epoch in eval mode on the whole set. Resumable from
    ``resume_path`` (written after every epoch; a file written with other hyper-parameters or ``run_settings`` is
    ignored, so a larger ``max_epochs`` continues and anything else starts over). Returns the per-epoch history; the
    caller checks whether the last epoch reached the target.
    """
    from eea_repro.models.training import accuracy, train_epoch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[dict] = []
    settings = {"lr": lr, "batch_size": batch_size, "weight_decay": weight_decay, "seed": seed, **(run_settings or {})}
    resume_path = Path(resume_path)
    saved = torch.load(resume_path, map_location="cpu", weights_only=True) if resume_path.exists() else None
    if saved is not None and saved["settings"] != settings:
        log(f"{resume_path.name} was written with {saved['settings']}, not {settings}: starting over")
    elif saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        history = saved["history"]
        log(f"resumed from {resume_path.name} after epoch {len(history)}")
    started = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    while len(history) < max_epochs and not (history and history[-1]["train_accuracy"] > target_accuracy):
        train_loss = train_epoch(model, images, labels, optimizer, generator, batch_size=batch_size,
                                 progress=progress, desc=f"epoch {len(history) + 1}")
        train_accuracy = accuracy(model, images, labels)
        history.append({"epoch": len(history) + 1, "train_loss": train_loss,
                        "train_accuracy": train_accuracy, "seconds": time.perf_counter() - started})
        log(f"epoch {len(history)}: train loss {train_loss:.4f}, train accuracy {train_accuracy:.3f}")
        with atomic_path(resume_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "history": history, "settings": settings}, tmp)
    return history


def train_permuted_label_model(model_name, model_cfg, settings: dict, dr_cfg: dict, image_root, train_file, test_file,
                               classes_file, init_checkpoint, out_checkpoint, out_record, *, resume, seed,
                               device) -> None:
    """Fit the architecture to a seeded subset of ``train_file`` with permuted labels; record train/test accuracy.

    ``init_checkpoint`` (the explained model's weights) is the starting point when ``dr_cfg['init']`` is
    ``checkpoint`` (the paper preset fine-tunes the pretrained model); ``scratch`` starts from timm's random init.
    """
    from eea_repro.models import checkpoints
    from eea_repro.data.files import read_label_file
    from eea_repro.data.loading import subset_by_count
    from eea_repro.models.network import ExplainedModel, ModelSpec, build_explained_model, create_network, resolve_device
    from eea_repro.data.loading import load_tensors, open_split
    from eea_repro.models.network import load_model
    from eea_repro.workflow.io import read_classes
    from eea_repro.workflow.numerics import seed_everything
    from eea_repro.models.training import accuracy

    seed_everything(seed)
    device = resolve_device(device)
    num_classes = len(read_classes(classes_file))
    spec = ModelSpec.from_config(model_cfg)
    n_train = len(read_label_file(train_file))
    if dr_cfg["train_count"] > n_train:
        raise ValueError(f"config key 'data_randomization.train_count': {dr_cfg['train_count']} > {n_train} images "
                         f"in {train_file}")
    rows = subset_by_count(n_train, dr_cfg["train_count"], seed)
    images, true_labels, _ = load_tensors(open_split(image_root, train_file, model_cfg, classes_file, rows),
                                          desc="train images")
    labels = torch.from_numpy(permuted_labels(true_labels.numpy(), seed))
    if dr_cfg["init"] == "checkpoint":
        model = build_explained_model(spec, num_classes, init_checkpoint, device=device).requires_grad_(True)
    else:
        model = ExplainedModel(create_network(spec, num_classes), spec).to(device)
    history = fit_until_memorised(
        model, images, labels, target_accuracy=dr_cfg["target_train_accuracy"], max_epochs=settings["max_epochs"],
        lr=settings["lr"], batch_size=settings["batch_size"], weight_decay=settings["weight_decay"], seed=seed,
        resume_path=resume, run_settings={k: dr_cfg[k] for k in ("init", "train_count")}, progress=progress(),
    )
    reached = history[-1]["train_accuracy"]
    if reached <= dr_cfg["target_train_accuracy"]:
        raise RuntimeError(
            f"{model_name}: the permuted-label model reached a training accuracy of {reached:.3f} after "
            f"{len(history)} epochs, not above data_randomization.target_train_accuracy "
            f"({dr_cfg['target_train_accuracy']}); raise data_randomization.models.{model_name}.max_epochs (training "
            f"continues) or .lr, or lower data_randomization.train_count"
        )
    checkpoints.save_state_dict({k: v.detach().cpu() for k, v in model.net.state_dict().items()}, out_checkpoint)
    trained = load_model(model_cfg, out_checkpoint, classes_file, device)
    n_test = len(read_label_file(test_file))
    test_rows = None if dr_cfg["test_count"] is None else subset_by_count(n_test, min(dr_cfg["test_count"], n_test), seed)
    test = load_tensors(open_split(image_root, test_file, model_cfg, classes_file, test_rows), desc="test images")
    scores = {
        "train_accuracy": accuracy(trained, images, labels),
        "train_accuracy_true_labels": accuracy(trained, images, true_labels),
        "test_accuracy": accuracy(trained, *test[:2]),
        "chance_accuracy": 1.0 / num_classes,
        "label_agreement": float((labels == true_labels).float().mean()),
    }
    checkpoints.write_checkpoint_record(
        out_record, out_checkpoint, f"trained on {len(labels)} images of {Path(train_file).name} with permuted labels",
        timm_name=spec.timm_name, init=dr_cfg["init"], train_images=len(labels), test_images=len(test[1]),
        epochs=len(history), seconds=history[-1]["seconds"], history=history, **scores,
    )
    Path(resume).unlink(missing_ok=True)
    print(f"saved {out_checkpoint}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))


# --- maps and their similarity -----------------------------------------------------------------------------------


def make_permuted_label_maps(methods, model_cfg, sanity_cfg, explainer_cfg, finetune_cfg, scoring,
                             checkpoint, explainer_file, image_root, split_file, classes_file, out_maps: dict, *, seed,
                             device, precision, batch_size, training_seed: int | None = None) -> None:
    """Every method's maps of the sanity images on the permuted-label model, for the ground-truth class.

    EEA starts from the explainer pretrained against this model and is fine-tuned per image with the main run's
    settings; pEEA is that explainer's map. ``seed`` draws the sanity images, ``training_seed`` (default: ``seed``;
    a seed replicate's own) the seeded methods' maps.
    """
    from eea_repro.explainer.network import load_explainer
    from eea_repro.models.network import ModelSpec, resolve_device
    from eea_repro.sanity.parameter import load_sanity_images, save_method_maps
    from eea_repro.explainer.stage import finetune_settings
    from eea_repro.metrics.pixel_order import scoring_ties
    from eea_repro.models.network import load_model
    from eea_repro.workflow.io import read_classes
    from eea_repro.workflow.numerics import seed_everything

    training_seed = seed if training_seed is None else training_seed
    seed_everything(training_seed)
    device = resolve_device(device)
    model = load_model(model_cfg, checkpoint, classes_file, device)
    images, labels, ids = load_sanity_images(image_root, split_file, model_cfg, classes_file, sanity_cfg["n_images"],
                                             seed, device)
    explainer = None
    if {"eea", "peea"} & set(methods):
        explainer = load_explainer(ModelSpec.from_config(model_cfg), explainer_file,
                                   len(read_classes(classes_file))).to(device)
    save_method_maps(methods, model, images, labels, ids, out_maps, explainer=explainer,
                     eea_settings=finetune_settings(explainer_cfg, finetune_cfg, scoring),
                     ties=scoring_ties(scoring, ids, images.shape[-1], device), seed=training_seed,
                     precision=precision, batch_size=batch_size)


def data_randomization_similarity(original_maps: dict[str, str], permuted_maps: dict[str, str], input_size: int,
                                  out_csv) -> None:
    """Per image and method: Spearman ρ (and |ρ|, SSIM, HOG) between the original and the permuted-label map.

    ``original_maps`` / ``permuted_maps``: one file per method of the sanity images on each model, both explaining the
    ground-truth class; the maps are compared at the model's input size, as in the parameter randomization checks.
    """
    from eea_repro.sanity.parameter import similarity_frame

    frames = []
    for method, path in permuted_maps.items():
        permuted = load_map_shard(path)
        original = gather_maps([original_maps[method]], permuted["image_ids"])
        if not np.array_equal(original["classes"], permuted["classes"]):
            raise ValueError(f"{method}: the original maps explain other classes than the permuted-label maps")
        frames.append(similarity_frame(original, permuted, input_size))
    with atomic_path(out_csv) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


# --- figures -----------------------------------------------------------------------------------------------------


def make_randomization_comparison(columns: dict[str, str], method: str, model_cfg, sanity_cfg, image_root, split_file,
                                  classes_file, out_paths, *, title, seed) -> None:
    """Figs. 7 and 8: rows = the first sanity images (``sanity.grid_images``), columns = the image, then the maps of
    ``method`` overlaid, one column per header of ``columns`` (header -> map file holding those images)."""
    from eea_repro.sanity.parameter import grid_image_rows
    from eea_repro.data.loading import pick_images
    from eea_repro.figures.qualitative import figure_maps
    from eea_repro.workflow.io import read_classes

    class_names = read_classes(classes_file)
    picked, images = pick_images(image_root, split_file, model_cfg, classes_file,
                                 grid_image_rows(split_file, sanity_cfg, seed))
    wanted = [item["image_id"] for item in picked]
    maps = {header: figure_maps([path], wanted, images.shape[-1], method) for header, path in columns.items()}
    qualitative_grid(images.numpy(), maps, [class_names[item["label"]] for item in picked], out_paths, title=title)
