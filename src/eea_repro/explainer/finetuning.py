"""Stage 2 of EEA: per-image fine-tuning from the pretrained explainer (EEA / LTX). All images of a chunk are optimised
at once: the trainable parameters are stacked along a leading image dimension and ``torch.func.vmap`` runs the
per-image losses and gradients in one batched call; :func:`finetune_maps_loop` is the one-image reference it must
match."""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from eea_repro.explainer.network import (MaskExplainer, check_names, eea_loss, freeze, images_per_loss_pass, is_better,
                                         selection_pos_auc, trainable_parameters)
from eea_repro.models.network import for_inference

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def finetune_maps(
    explainer: MaskExplainer,
    explained: nn.Module,
    images01: torch.Tensor,
    classes: torch.Tensor,
    *,
    steps: int,
    lr: float,
    lam: float,
    size_loss: str,
    early_stop_pos: float | None = None,
    weight_decay: float = 0.01,
    chunk_size: int = 32,
    selection_labels: torch.Tensor | None = None,
    metric_batch_size: int = 256,
    ties: torch.Tensor | None = None,
    keep: str = "best",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """EEA maps: per-image fine-tuning from the pretrained explainer, all images of a chunk at once (``chunk_size``
    images, fewer where their activations under autograd would not fit in the memory budget).

    ``steps`` counts the maps scored, as the released code's per-image epochs: step 0 scores the pretrained map
    (pEEA), step k the map after k AdamW updates on that image alone. The map with the lowest POS AUC against
    ``selection_labels`` (default ``classes``) is kept, a later one only if strictly better, so the result is never
    worse than pEEA on that score. An image stops once its best POS is below ``early_stop_pos``.
    ``keep="last"`` instead keeps the map after all steps (no selection, no early stop): the map the explainer learns
    for that class, which class-specific figures need when the pretrained map already scores best for every class.
    ``ties`` (B, S*S) are the images' tie permutations for the POS scores (None: raster order), as in the metrics.

    Returns (token maps (B, h, w) float32, {"best_step", "best_pos", "steps_run"} per image).
    """
    if steps < 1:
        raise ValueError("steps must be >= 1 (step 0 is the pretrained map)")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    check_names(size_loss)
    freeze(explained)
    explainer.eval()
    home, device = images01.device, next(explainer.parameters()).device
    selection = classes if selection_labels is None else selection_labels
    images01, classes, selection = images01.to(device), classes.to(device), selection.to(device)
    ties = None if ties is None else ties.to(device)
    scorer = for_inference(explained)  # the POS selection's forwards (most of the work) in the fastest layout
    chunk_size = images_per_loss_pass(explainer, explained, chunk_size, images01.shape[-1], device)
    results = [
        _finetune_chunk(
            explainer, explained, scorer, images01[chunk], classes[chunk], selection[chunk],
            None if ties is None else ties[chunk],
            steps=steps, lr=lr, lam=lam, size_loss=size_loss,
            early_stop_pos=early_stop_pos if keep == "best" else None,
            weight_decay=weight_decay, metric_batch_size=metric_batch_size, keep=keep,
        )
        for chunk in (slice(start, start + chunk_size) for start in range(0, len(images01), chunk_size))
    ]
    maps = torch.cat([result[0] for result in results]).to(home)
    info = {key: torch.cat([result[1][key] for result in results]).to(home) for key in results[0][1]}
    return maps, info


def _finetune_chunk(explainer, explained, scorer, images01, classes, selection, ties, *, steps, lr, lam, size_loss,
                    early_stop_pos, weight_decay, metric_batch_size, keep="best"):
    count = len(images01)
    clean_hits = _clean_hits(scorer, images01, selection, metric_batch_size)
    start = {name: parameter.detach() for name, parameter in trainable_parameters(explainer).items()}
    params = {name: tensor.unsqueeze(0).repeat(count, *[1] * tensor.dim()) for name, tensor in start.items()}
    exp_avg = {name: torch.zeros_like(tensor) for name, tensor in params.items()}
    exp_avg_sq = {name: torch.zeros_like(tensor) for name, tensor in params.items()}

    def image_maps(image_params, image):
        return functional_call(explainer, image_params, (image.unsqueeze(0),))[0]

    def image_loss(image_params, image, image_class):
        token_masks = functional_call(explainer, image_params, (image.unsqueeze(0),))
        total, _, _ = eea_loss(explained, token_masks, image.unsqueeze(0), image_class.unsqueeze(0), lam, size_loss)
        return total, token_masks[0]

    grads_and_maps = vmap(grad(image_loss, has_aux=True))
    maps_only = vmap(image_maps)

    device = images01.device
    active = torch.arange(count, device=device)
    best_pos = torch.full((count,), math.nan, dtype=torch.float64, device=device)
    best_step = torch.zeros(count, dtype=torch.long, device=device)
    steps_run = torch.zeros(count, dtype=torch.long, device=device)
    for step in range(steps):
        last = step == steps - 1
        images, image_classes = images01[active], classes[active]
        with _unfused_attention(explainer, explained):
            if last:
                with torch.no_grad():
                    current = maps_only(params, images)
            else:
                grads, current = grads_and_maps(params, images, image_classes)
        current = current.detach().float()
        if step == 0:
            best_maps = current.clone()
        if keep == "best" or last:
            pos = selection_pos_auc(scorer, images, current, selection[active], metric_batch_size,
                                    None if ties is None else ties[active], clean_hits[active])
        else:  # "last" scores only the final map
            pos = torch.full((len(active),), math.nan, dtype=torch.float64, device=device)
        improved = is_better(pos, best_pos[active]) if keep == "best" else torch.ones_like(active, dtype=torch.bool)
        winners = active[improved]
        best_maps[winners], best_pos[winners], best_step[winners] = current[improved], pos[improved], step
        steps_run[active] = step + 1
        if last:
            break
        going_on = ~(best_pos[active] < early_stop_pos) if early_stop_pos is not None else torch.ones_like(improved)
        if not going_on.all():
            active = active[going_on]
            for state in (params, exp_avg, exp_avg_sq, grads):
                for name in state:
                    state[name] = state[name][going_on]
            if active.numel() == 0:
                break
        _adamw_update(params, grads, exp_avg, exp_avg_sq, step + 1, lr, weight_decay)
    return best_maps, {"best_step": best_step, "best_pos": best_pos, "steps_run": steps_run}


@torch.no_grad()
def _clean_hits(explained: nn.Module, images01: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Whether each clean image is classified as its class: POS's fraction-0 point, the same at every EEA step."""
    return torch.cat([explained(chunk).argmax(dim=-1) for chunk in images01.split(batch_size)]) == classes


@contextlib.contextmanager
def _unfused_attention(*models: nn.Module):
    """Run timm attention as explicit matmuls + softmax: vmap has no batching rule for fused SDPA and would run it
    one image at a time (the reason bf16 fine-tuning was slower than fp32 on a GPU). Same maths, restored after."""
    switched = [module for model in models for module in model.modules() if getattr(module, "fused_attn", None) is True]
    for module in switched:
        module.fused_attn = False
    try:
        yield
    finally:
        for module in switched:
            module.fused_attn = True


@torch.no_grad()
def _adamw_update(params, grads, exp_avg, exp_avg_sq, step: int, lr: float, weight_decay: float) -> None:
    """torch.optim.AdamW's update (decoupled decay, bias correction), applied in place to stacked tensors.

    Multi-tensor (foreach) kernels, as torch.optim's default: a handful of launches per step instead of six per
    parameter tensor, with the same elementwise arithmetic.
    """
    beta1, beta2 = _ADAM_BETAS
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    names = list(params)
    parameters = [params[name] for name in names]
    gradients = [grads[name] for name in names]
    averages = [exp_avg[name] for name in names]
    squares = [exp_avg_sq[name] for name in names]
    torch._foreach_mul_(parameters, 1 - lr * weight_decay)
    torch._foreach_lerp_(averages, gradients, 1 - beta1)
    torch._foreach_mul_(squares, beta2)
    torch._foreach_addcmul_(squares, gradients, gradients, value=1 - beta2)
    denominators = torch._foreach_sqrt(squares)
    torch._foreach_div_(denominators, bias_correction2_sqrt)
    torch._foreach_add_(denominators, _ADAM_EPS)
    torch._foreach_addcdiv_(parameters, averages, denominators, value=-step_size)


def finetune_maps_loop(
    explainer: MaskExplainer,
    explained: nn.Module,
    images01: torch.Tensor,
    classes: torch.Tensor,
    *,
    steps: int,
    lr: float,
    lam: float,
    size_loss: str,
    early_stop_pos: float | None = None,
    weight_decay: float = 0.01,
    selection_labels: torch.Tensor | None = None,
    metric_batch_size: int = 256,
    ties: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reference for :func:`finetune_maps`: one image at a time, a fresh model copy and a real torch AdamW each."""
    freeze(explained)
    home, device = images01.device, next(explainer.parameters()).device
    selection = classes if selection_labels is None else selection_labels
    images01, classes, selection = images01.to(device), classes.to(device), selection.to(device)
    image_ties = [None] * len(images01) if ties is None else ties.to(device).split(1)
    maps, best_pos, best_step, steps_run = [], [], [], []
    for image, image_class, image_selection, tie in zip(images01.split(1), classes.split(1), selection.split(1),
                                                         image_ties):
        model = copy.deepcopy(explainer).eval()
        optimizer = torch.optim.AdamW(trainable_parameters(model).values(), lr=lr, weight_decay=weight_decay)
        best = (math.nan, None, 0)
        for step in range(steps):
            token_masks = model(image)
            pos = selection_pos_auc(explained, image, token_masks, image_selection, metric_batch_size, tie)
            if step == 0 or is_better(pos, torch.tensor(best[0], dtype=pos.dtype, device=pos.device)).item():
                best = (pos.item(), token_masks.detach().float()[0], step)
            if step == steps - 1 or (early_stop_pos is not None and best[0] < early_stop_pos):
                break
            optimizer.zero_grad()
            eea_loss(explained, token_masks, image, image_class, lam, size_loss)[0].backward()
            optimizer.step()
        maps.append(best[1])
        best_pos.append(best[0])
        best_step.append(best[2])
        steps_run.append(step + 1)
    return torch.stack(maps).to(home), {
        "best_step": torch.tensor(best_step, device=home),
        "best_pos": torch.tensor(best_pos, dtype=torch.float64, device=home),
        "steps_run": torch.tensor(steps_run, device=home),
    }
