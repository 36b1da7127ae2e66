"""Stage 1 of EEA: pretrain one explainer on the explainer-training split (pEEA / pLTX), keep the epoch with the best
validation POS AUC, and resume an interrupted run from its last epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from eea_repro.explainer.network import (MaskExplainer, check_names, eea_loss, explain, freeze,
                                         images_per_loss_pass, is_better, selection_pos_auc, trainable_parameters)
from eea_repro.models.network import for_inference
from eea_repro.workflow.io import atomic_path

PRETRAIN_STATE_FILE = "pretrain_state.pt"


def pretrain(
    explainer: MaskExplainer,
    explained: nn.Module,
    train_batches_fn: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    variant: str,
    lam: float,
    size_loss: str,
    lr: float,
    weight_decay: float,
    epochs: int,
    checkpoint_dir: str | Path,
    progress: Callable[[Iterable], Iterable] | None = None,
    log: Callable[[str], None] = print,
    eval_batch_size: int = 64,
    metric_batch_size: int = 256,
    val_ties: torch.Tensor | None = None,
    validate: bool = True,
) -> dict:
    """Train the explainer with AdamW and leave it holding the epoch with the lowest validation POS AUC.

    ``train_batches_fn(epoch)`` yields (images01, labels) batches for that epoch; it should derive any shuffling from
    ``epoch`` so that a resumed run sees the same batches. ``progress`` optionally wraps each epoch's batch iterable
    (e.g. tqdm). After every epoch a training checkpoint is written to ``checkpoint_dir``; a run finding one resumes
    from it (the hyper-parameters must match). Validation POS is scored against ``val_labels`` (ground truth, as in
    the released code) for both variants; ``eval_batch_size`` images go through the explainer at once and
    ``metric_batch_size`` perturbed inputs through the explained model; ``val_ties`` are the validation images' tie
    permutations (None: raster order). ``validate=False`` skips the validation passes and keeps the last epoch
    (``val_pos`` NaN): for a one-epoch fit, where there is nothing to choose, it saves the pass and changes no weight.

    Returns ``{"epochs": [{"epoch", "loss", "ce", "size", "val_pos"}, ...], "best_epoch", "best_val_pos"}``.
    """
    check_names(size_loss, variant)
    freeze(explained)
    scorer = for_inference(explained)  # validation POS forwards only: the fastest layout
    device = next(explainer.parameters()).device
    optimizer = torch.optim.AdamW(trainable_parameters(explainer).values(), lr=lr, weight_decay=weight_decay)
    settings = {"variant": variant, "lam": float(lam), "size_loss": size_loss, "lr": float(lr),
                "weight_decay": float(weight_decay)}
    checkpoint_path = Path(checkpoint_dir) / PRETRAIN_STATE_FILE

    start_epoch, history, best = 0, [], {"state": None, "epoch": None, "val_pos": math.inf}
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved["settings"] != settings:
            raise ValueError(f"{checkpoint_path} was written with {saved['settings']}, not {settings}; remove it")
        explainer.load_state_dict(saved["explainer"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch, history, best = saved["epoch"], saved["history"], saved["best"]
        torch.set_rng_state(saved["rng_cpu"])
        if torch.cuda.is_available() and saved["rng_cuda"]:
            torch.cuda.set_rng_state_all(saved["rng_cuda"])
        log(f"resumed pretraining from {checkpoint_path} after epoch {start_epoch}")

    for epoch in range(start_epoch, epochs):
        explainer.train()
        totals = torch.zeros(3, dtype=torch.float64)
        seen = 0
        batches = train_batches_fn(epoch)
        for images01, labels in progress(batches) if progress else batches:
            images01, labels = images01.to(device), labels.to(device)
            if variant == "predicted":
                with torch.no_grad():
                    labels = explained(images01).argmax(1)
            optimizer.zero_grad(set_to_none=True)
            totals += _accumulate_gradients(explainer, explained, images01, labels, lam, size_loss)
            optimizer.step()
            seen += len(images01)
        loss, ce, size = (totals / max(seen, 1)).tolist()
        val_pos = (_validation_pos(explainer, scorer, val_images, val_labels, eval_batch_size, metric_batch_size,
                                   val_ties) if validate else math.nan)
        history.append({"epoch": epoch + 1, "loss": loss, "ce": ce, "size": size, "val_pos": val_pos})
        if best["state"] is None or not validate or is_better(torch.tensor(val_pos), torch.tensor(best["val_pos"])):
            state = {name: tensor.detach().cpu().clone() for name, tensor in explainer.state_dict().items()}
            best = {"state": state, "epoch": epoch + 1, "val_pos": val_pos}
        _save_training_state(checkpoint_path, explainer, optimizer, epoch + 1, history, best, settings)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} (ce {ce:.4f}, size {size:.4f}), val POS {val_pos:.3f}")

    if best["state"] is not None:
        explainer.load_state_dict(best["state"])
    explainer.eval()
    return {"epochs": history, "best_epoch": best["epoch"], "best_val_pos": best["val_pos"]}


def _accumulate_gradients(explainer, explained, images01, labels, lam: float, size_loss: str) -> torch.Tensor:
    """Backpropagate one batch's loss, in micro-batches where the whole batch would not fit in the job's memory
    budget (:mod:`eea_repro.models.memory`): each micro-batch's loss weighted by its share of the batch, so the
    gradient is the batch's (up to float rounding; the networks run in eval mode, so no batch statistics change).
    Returns the batch's (total, ce, size) summed over its images, float64 on the CPU."""
    micro = images_per_loss_pass(explainer, explained, len(images01), images01.shape[-1], images01.device)
    sums = torch.zeros(3, dtype=torch.float64)
    for part_images, part_labels in zip(images01.split(micro), labels.split(micro)):
        total, ce, size_term = eea_loss(explained, explainer(part_images), part_images, part_labels, lam, size_loss)
        # one micro-batch is the whole batch: its loss as is, so a batch that fits keeps its bits
        (total if micro >= len(images01) else total * (len(part_images) / len(images01))).backward()
        sums += torch.stack([total, ce, size_term]).detach().cpu().double() * len(part_images)
    return sums


# A logit lead below this could flip between batch compositions (float rounding), so such an image does not count
# as surely predicted as labelled.
SURE_MARGIN = 0.05


@torch.no_grad()
def predicted_as_labelled(explained: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Whether the explained model's top-1 is every image's label with a clear lead: then 'predicted' pretraining
    explains the ground truth at every step, exactly as 'target' does, and trains the same explainer."""
    freeze(explained)
    for images01, labels in batches:
        top = explained(images01).topk(2, dim=1)
        lead = top.values[:, 0] - top.values[:, 1]
        if not bool(((top.indices[:, 0] == labels.to(top.indices.device)) & (lead > SURE_MARGIN)).all()):
            return False
    return True


def _validation_pos(explainer, explained, images01, labels, batch_size: int, metric_batch_size: int,
                    ties: torch.Tensor | None = None) -> float:
    """Mean per-image POS AUC of the explainer's maps on the validation split (batched, on the explainer's device)."""
    device = next(explainer.parameters()).device
    scores = []
    for start in range(0, len(images01), batch_size):
        part = slice(start, start + batch_size)
        images, classes = images01[part].to(device), labels[part].to(device)
        maps = explain(explainer, images, batch_size)
        scores.append(selection_pos_auc(explained, images, maps, classes, metric_batch_size,
                                        None if ties is None else ties[part]))
    return float(torch.cat(scores).nanmean())


def _save_training_state(path: Path, explainer, optimizer, epoch: int, history: list, best: dict, settings: dict):
    payload = {
        "explainer": explainer.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": history,
        "best": best,
        "settings": settings,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
