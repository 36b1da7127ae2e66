"""The EEA / LTX explainer: a mask-generating network trained against a frozen explained model.

The explainer is a copy of a classifier backbone (usually the explained model's own weights) with a small per-token
head that outputs a sigmoid mask at the backbone's native token grid. Training minimises
``CE(f(x * M), c) + lam * size(M)``: the mask must keep what the explained model needs to still predict ``c`` while
covering as little of the image as possible.

Two stages, as in the released code:

* :func:`pretrain` fits one explainer on a training split (pEEA / pLTX) and keeps the epoch with the best
  validation POS AUC;
* :func:`finetune_maps` restarts from the pretrained weights for every image, takes a few optimiser steps on that
  image alone and keeps the step whose map has the best POS AUC (EEA / LTX). All images of a chunk are optimised
  at once: the trainable parameters are stacked along a leading image dimension and ``torch.func.vmap`` runs the
  per-image losses and gradients in one batched call.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from eea_repro.models.checkpoints import load_state_dict, save_state_dict
from eea_repro.workflow.io import atomic_path
from eea_repro.metrics.engine import normalize_maps, pos_auc_per_image
from eea_repro.models.network import ModelSpec, create_network, for_inference

SIZE_LOSSES = ("l1", "ltx")
VARIANTS = ("target", "predicted")
PRETRAIN_STATE_FILE = "pretrain_state.pt"

# Top-level timm modules that forward_features does not use (classifier path) or that the released code freezes
# (ViT embeddings). Unused parameters must be frozen: they would get no gradient in the reference loop but a zero
# gradient (hence weight decay) in the functional update, and the two would drift apart.
_CLASSIFIER_PATH = {"head", "head_drop", "fc", "fc_norm", "attn_pool", "global_pool"}
_VIT_EMBEDDINGS = {"patch_embed", "cls_token", "reg_token", "pos_embed"}

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


class MaskExplainer(nn.Module):
    """Backbone + per-token head mapping [0, 1] images to token masks in (0, 1).

    The explainer's architecture (``spec``) need not be the explained model's: it reads [0, 1] images, resizes them
    to its own input size and normalises them with its own mean/std, so any explainer can explain any model.
    """

    def __init__(self, spec: ModelSpec, backbone_state: dict[str, torch.Tensor] | None, num_classes: int):
        super().__init__()
        self.spec = spec
        self.family = spec.family
        self.backbone = create_network(spec, num_classes)
        if backbone_state is not None:
            _load_backbone(self.backbone, backbone_state)
        self.backbone.reset_classifier(0)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

        width = self.backbone.num_features
        frozen = set(_CLASSIFIER_PATH)
        if self.family == "vit":
            self.head = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
            for layer in (self.head[0], self.head[2]):  # HF post_init convention, as in the released explainer
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
            frozen |= _VIT_EMBEDDINGS
        else:
            self.head = nn.Conv2d(width, 1, kernel_size=1)
        for name, parameter in self.backbone.named_parameters():
            if name.split(".")[0] in frozen:
                parameter.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "MaskExplainer":
        """The released code runs the backbone in eval mode throughout: BN keeps its running stats, no dropout."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        size = self.spec.input_size
        if images01.shape[-2:] != (size, size):
            images01 = F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False)
        features = self.backbone.forward_features((images01 - self.mean) / self.std)
        if self.family == "vit":
            tokens = features[:, self.backbone.num_prefix_tokens :]
            logits = self.head(tokens).squeeze(-1).unflatten(1, tuple(self.backbone.patch_embed.grid_size))
        else:
            logits = self.head(features)[:, 0]
        return torch.sigmoid(logits)


def explainer_network(net: nn.Module, spec: ModelSpec) -> None:
    """What the explainer reads from its backbone: a token sequence on a fixed patch grid (ViT), or a (B, C, h, w)
    feature map (CNN); raises ValueError naming what is missing."""
    from eea_repro.methods.cnn import feature_map_network

    if spec.family == "cnn":
        feature_map_network(net, spec)
    elif not hasattr(getattr(net, "patch_embed", None), "grid_size") or not hasattr(net, "num_prefix_tokens"):
        raise ValueError(f"{type(net).__name__}: the ViT explainer needs a patch embedding with a fixed grid")


def _load_backbone(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every backbone weight; the classifier may be absent (it is dropped right after) but nothing else."""
    classifier = (getattr(net, "default_cfg", None) or {}).get("classifier") or ""
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (classifier and key.startswith(classifier + "."))]
    if missing or unexpected:
        raise ValueError(
            f"backbone state does not fit {type(net).__name__} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def trainable_parameters(explainer: nn.Module) -> dict[str, nn.Parameter]:
    return {name: parameter for name, parameter in explainer.named_parameters() if parameter.requires_grad}


def upsample_masks(token_masks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) -> (B, size, size), bilinear with align_corners=False: the interpolation the metric engine uses."""
    return F.interpolate(token_masks.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def size_penalty(token_masks: torch.Tensor, size_loss: str) -> torch.Tensor:
    """"l1": mean mask value. "ltx": the released BCE-with-logits(m, 0) on sigmoid outputs = mean softplus(m)."""
    if size_loss == "l1":
        return token_masks.mean()
    if size_loss == "ltx":
        return F.softplus(token_masks).mean()
    raise ValueError(f"size_loss {size_loss!r} is not one of {SIZE_LOSSES}")


def eea_loss(
    explained_model: nn.Module,
    token_masks: torch.Tensor,
    images01: torch.Tensor,
    classes: torch.Tensor,
    lam: float,
    size_loss: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (total, ce, size): CE of the explained model on the masked image plus lam times the mask size.

    The mask multiplies the [0, 1] image, so masked pixels are black; the explained model normalises internally.
    """
    masks = upsample_masks(token_masks, images01.shape[-1])
    logits = explained_model(images01 * masks.unsqueeze(1))
    ce = F.cross_entropy(logits.float(), classes)
    size = size_penalty(token_masks.float(), size_loss)
    return ce + lam * size, ce, size


def _freeze(explained: nn.Module) -> None:
    """Gradients flow *through* the explained model to the mask but never into its weights."""
    explained.eval()
    explained.requires_grad_(False)


@torch.no_grad()
def explain(explainer: MaskExplainer, images01: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """pEEA maps: the pretrained explainer's token masks (B, h, w), float32, on the images' device."""
    explainer.eval()
    device = next(explainer.parameters()).device
    chunks = [explainer(chunk.to(device)).float().to(images01.device) for chunk in images01.split(batch_size)]
    return torch.cat(chunks)


def selection_pos_auc(
    explained: nn.Module, images01: torch.Tensor, token_maps: torch.Tensor, classes: torch.Tensor, batch_size: int,
    ties: torch.Tensor | None = None, clean_hits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image POS AUC (float64) of token maps, scored as the metric engine scores stored maps (same upsampling,
    same pixel order with the images' tie permutations ``ties``); ``clean_hits`` as for ``pos_auc_per_image``."""
    normalized, _valid, _constant = normalize_maps(token_maps.detach().float(), images01.shape[-1])
    return pos_auc_per_image(explained, images01, normalized, classes, batch_size, ties=ties,
                             clean_hits=clean_hits).to(images01.device)


@torch.no_grad()
def _clean_hits(explained: nn.Module, images01: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Whether each clean image is classified as its class: POS's fraction-0 point, the same at every EEA step."""
    return torch.cat([explained(chunk).argmax(dim=-1) for chunk in images01.split(batch_size)]) == classes


def _check_names(size_loss: str, variant: str = "target") -> None:
    if size_loss not in SIZE_LOSSES:
        raise ValueError(f"size_loss {size_loss!r} is not one of {SIZE_LOSSES}")
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")


def _is_better(candidate: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Strictly lower POS wins; a NaN score never replaces a map, but any score replaces a NaN best."""
    return (candidate < best) | (best.isnan() & ~candidate.isnan())


# --------------------------------------------------------------------------------------------------------------
# Stage 1: pretraining


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
    _check_names(size_loss, variant)
    _freeze(explained)
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
            total, ce, size = eea_loss(explained, explainer(images01), images01, labels, lam, size_loss)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            totals += torch.stack([total, ce, size]).detach().cpu().double() * len(images01)
            seen += len(images01)
        loss, ce, size = (totals / max(seen, 1)).tolist()
        val_pos = (_validation_pos(explainer, scorer, val_images, val_labels, eval_batch_size, metric_batch_size,
                                   val_ties) if validate else math.nan)
        history.append({"epoch": epoch + 1, "loss": loss, "ce": ce, "size": size, "val_pos": val_pos})
        if best["state"] is None or not validate or _is_better(torch.tensor(val_pos), torch.tensor(best["val_pos"])):
            state = {name: tensor.detach().cpu().clone() for name, tensor in explainer.state_dict().items()}
            best = {"state": state, "epoch": epoch + 1, "val_pos": val_pos}
        _save_training_state(checkpoint_path, explainer, optimizer, epoch + 1, history, best, settings)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} (ce {ce:.4f}, size {size:.4f}), val POS {val_pos:.3f}")

    if best["state"] is not None:
        explainer.load_state_dict(best["state"])
    explainer.eval()
    return {"epochs": history, "best_epoch": best["epoch"], "best_val_pos": best["val_pos"]}


# A logit lead below this could flip between batch compositions (float rounding), so such an image does not count
# as surely predicted as labelled.
SURE_MARGIN = 0.05


@torch.no_grad()
def predicted_as_labelled(explained: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Whether the explained model's top-1 is every image's label with a clear lead: then 'predicted' pretraining
    explains the ground truth at every step, exactly as 'target' does, and trains the same explainer."""
    _freeze(explained)
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


def save_explainer(explainer: MaskExplainer, path: str | Path) -> str:
    """Head and backbone in one safetensors file; returns its sha256."""
    return save_state_dict(explainer.state_dict(), path)


def load_explainer(spec: ModelSpec, path: str | Path, num_classes: int) -> MaskExplainer:
    explainer = MaskExplainer(spec, None, num_classes)
    explainer.load_state_dict(load_state_dict(path))
    return explainer.eval()


# --------------------------------------------------------------------------------------------------------------
# Stage 2: per-image fine-tuning


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
    """EEA maps: per-image fine-tuning from the pretrained explainer, all images of a chunk at once.

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
    _check_names(size_loss)
    _freeze(explained)
    explainer.eval()
    home, device = images01.device, next(explainer.parameters()).device
    selection = classes if selection_labels is None else selection_labels
    images01, classes, selection = images01.to(device), classes.to(device), selection.to(device)
    ties = None if ties is None else ties.to(device)
    scorer = for_inference(explained)  # the POS selection's forwards (most of the work) in the fastest layout
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
        improved = _is_better(pos, best_pos[active]) if keep == "best" else torch.ones_like(active, dtype=torch.bool)
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
    _freeze(explained)
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
            if step == 0 or _is_better(pos, torch.tensor(best[0], dtype=pos.dtype, device=pos.device)).item():
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
