"""Batched metric engine: ADP, PIC and the POS / NEG / DEL / INS perturbation tests.

One implementation serves every method (EEA, pEEA and all baselines) so their numbers are comparable.

Conventions (pinned; see the appendix, section 1, and the released evaluation code). The report and docs/metrics.md print
:func:`eea_repro.metrics.names.conventions`, built from the fractions the engine below uses.

* A map (B, h, w) is upsampled bilinearly (``align_corners=False``) to the input size S and min-max normalised per
  image. A map holding any NaN / inf is *invalid*: its image gets ``valid=False`` and NaN metrics, it is never
  dropped silently. A constant finite map normalises to all ones and is flagged ``constant=True``.
* One total order per map (:mod:`.pixel_order`): descending normalised value, ties broken by the run's tie rule
  (``random``: a seeded permutation per image; ``raster``: lower row-major index first). With N = S*S pixels and
  fraction f = j/10, k(f) = floor(N*j/10) (in integers, because ``int(N*0.7)`` in floating point is one short for
  some N). POS and DEL remove the first k(f) pixels of the order, NEG removes the last k(f), and INS reveals the first
  N - k(1 - f) on a black canvas, i.e. it shows what NEG at 1 - f leaves, so the engine scores those images once for
  both. Removing a pixel sets it to 0 in all channels of the [0, 1] image; the model normalises internally.
* Scores are softmax probabilities of the scored class c (in fp32, also under bf16 autocast); accuracy = argmax == c.
  Curves, areas and ratios are computed in float64 from them.
* ADP = 100 max(0, Y - O) / Y and PIC = 100 [Y < O] with Y = p_c(x), O = p_c(x * map) (soft mask on the [0, 1] image).
* POS / NEG = 100 trapz(accuracy) over removal fractions 0, 0.1, ..., 0.9 (0 is the clean image).
* DEL = 100 trapz(p_c) over removal fractions 0, ..., 1.0 (1.0 is the all-black image).
* INS = 100 trapz(p_c) over revealed fractions 0, ..., 1.0 (0 is the all-black image, 1.0 the clean one).
* ``ltx_code=True`` follows the released code instead: every score is taken against the ground-truth label, DEL is the
  probability curve along the POS removals and INS along the NEG removals, both over fractions 0, ..., 0.9 (no black
  image).

Per-image values are returned; a table number is their mean (the trapezoid is linear, so the mean of per-image AUCs
equals the AUC of the mean curve).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from eea_repro.models.memory import inference_chunk
from eea_repro.metrics.names import FRACTION_STEPS, METRICS
from eea_repro.metrics.pixel_order import pixel_ranks

VARIANTS = ("target", "predicted")
PRECISIONS = ("fp32", "bf16")

_FRACTION_STEP = 1 / FRACTION_STEPS  # fractions are j / FRACTION_STEPS
MAP_STEPS = 1 + 2 * (FRACTION_STEPS - 1)  # model inputs per map: soft-masked, POS and NEG 0.1..0.9
# plus one per image (clean) and one per job (the black image), shared by every map of that image
_MOST_RELEVANT_FIRST = 0  # removes a prefix of the map's pixel order
_LEAST_RELEVANT_FIRST = 1  # removes a suffix of it
# Column layout of the per-map score table built from _evaluation_steps.
_SOFT = 0
_POS_STEPS = slice(1, FRACTION_STEPS)
_NEG_STEPS = slice(FRACTION_STEPS, 2 * FRACTION_STEPS - 1)


@dataclass(frozen=True)
class _Perturbation:
    """One model input derived from an image: ``removed`` pixels taken from the front (most relevant first) or the
    back (least relevant first) of the map's pixel order, or the soft-masked image."""

    order: int = _MOST_RELEVANT_FIRST
    removed: int = 0
    soft_mask: bool = False


def removed_pixel_count(num_pixels: int, step: int) -> int:
    """k(f), the pixels removed at fraction f = step/10: floor(num_pixels * step / 10), exact in integers."""
    return num_pixels * step // FRACTION_STEPS


def revealed_pixel_count(num_pixels: int, step: int) -> int:
    """Pixels INS reveals at fraction f = step/10: N - k(1 - f), what NEG's removal at 1 - f leaves."""
    return num_pixels - removed_pixel_count(num_pixels, FRACTION_STEPS - step)


def normalize_maps(maps: Tensor | np.ndarray, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Upsample maps to ``size`` x ``size`` and min-max normalise each one.

    Returns ``(normalized, valid, constant)``. Rows of invalid maps (any NaN / inf) are NaN so that no caller can use
    them by accident; constant finite maps become all ones.
    """
    maps = torch.as_tensor(maps).float()
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, h, w), got shape {tuple(maps.shape)}")
    valid = torch.isfinite(maps).flatten(1).all(dim=1)
    safe = torch.where(valid[:, None, None], maps, torch.zeros_like(maps))
    if safe.shape[-2:] != (size, size):
        safe = F.interpolate(safe[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    flat = safe.flatten(1)
    low = flat.amin(dim=1)
    high = flat.amax(dim=1)
    native = maps.flatten(1)
    # Bilinear weights can add rounding noise to a constant map, so constancy is also judged on the native grid.
    constant = valid & ((high <= low) | (native.amax(dim=1) <= native.amin(dim=1)))
    span = torch.where(constant, torch.ones_like(high), high - low)
    normalized = ((safe - low[:, None, None]) / span[:, None, None]).clamp_(0.0, 1.0)
    normalized[constant] = 1.0
    normalized[~valid] = float("nan")
    return normalized, valid, constant


def classes_for_variant(
    model: Callable[[Tensor], Tensor],
    images01: Tensor,
    labels: Tensor | np.ndarray,
    variant: str,
    *,
    batch_size: int = 256,
    precision: str = "fp32",
) -> Tensor:
    """The class each map explains: the ground truth ('target') or the model's clean top-1 ('predicted')."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
    device = _model_device(model, images01.device)
    if variant == "target":
        return torch.as_tensor(labels, dtype=torch.long, device=device)
    return _clean_top1(model, images01.to(device), batch_size, precision)


@dataclass(frozen=True)
class ShardImages:
    """The images a metric job scores every map on, with what all those scores share: one forward of each clean
    image, one of the all-black image (the same for every image) and each image's tie permutation."""

    images01: Tensor  # (B, 3, S, S) on the model's device
    labels: Tensor  # (B,) ground truth
    clean_probs: Tensor  # (B, K) softmax of the clean images, fp32
    clean_top1: Tensor  # (B,) argmax of the clean logits: the 'predicted' variant's class
    black_probs: Tensor  # (K,) softmax of the all-black image, fp32
    ties: Tensor | None  # (B, S*S) tie permutations; None = raster order

    def classes(self, variant: str) -> Tensor:
        """The class each image's map explains in ``variant``: the ground truth, or the clean top-1."""
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")
        return self.labels if variant == "target" else self.clean_top1


@torch.inference_mode()
def prepare_shard(
    model: Callable[[Tensor], Tensor],
    images01: Tensor,
    labels: Tensor | np.ndarray,
    *,
    ties: Tensor | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
) -> ShardImages:
    """Score the clean images and the black image once; every method's maps are then scored against them."""
    _check_precision(precision)
    device = _model_device(model, images01.device)
    images01 = images01.to(device)
    size = _square_size(images01)
    logits = torch.cat([_logits(model, chunk, precision) for chunk in images01.split(batch_size)])
    black = _logits(model, torch.zeros((1, 3, size, size), device=device), precision)[0]
    return ShardImages(
        images01=images01,
        labels=torch.as_tensor(labels, dtype=torch.long, device=device),
        clean_probs=logits.softmax(dim=-1),
        clean_top1=logits.argmax(dim=-1),
        black_probs=black.softmax(dim=-1),
        ties=None if ties is None else ties.to(device),
    )


@torch.inference_mode()
def score_maps(
    model: Callable[[Tensor], Tensor],
    shard: ShardImages,
    maps: Tensor | np.ndarray,
    classes: Tensor | np.ndarray,
    *,
    ltx_code: bool = False,
    batch_size: int = 256,
    precision: str = "fp32",
    rows: Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per-image ADP, PIC, POS, NEG, DEL, INS plus ``valid``, ``constant`` and ``correct`` (clean top-1 == label) of
    one map per image of ``shard`` (or of its ``rows``: maps and classes then hold those rows only).

    ``classes`` is what the metrics score against (the explained class); with ``ltx_code=True`` the ground-truth
    labels are scored instead, as in the released code. Each map costs :data:`MAP_STEPS` model inputs (soft-masked,
    POS and NEG removals 0.1..0.9), built chunk by chunk from one pixel order per image; ``batch_size`` counts model
    inputs per forward pass.
    """
    _check_precision(precision)
    device = shard.images01.device
    size = _square_size(shard.images01)
    rows = torch.arange(len(shard.labels), device=device) if rows is None else rows.to(device)
    images01, labels = shard.images01[rows], shard.labels[rows]
    classes = torch.as_tensor(classes, dtype=torch.long, device=device)
    normalized, valid, constant = normalize_maps(torch.as_tensor(maps).to(device), size)
    scored = labels if ltx_code else classes

    count = len(rows)
    results = {name: np.full(count, np.nan) for name in METRICS}
    results["valid"] = valid.cpu().numpy()
    results["constant"] = constant.cpu().numpy()
    results["correct"] = (shard.clean_top1[rows] == labels).cpu().numpy()
    if valid.any():
        keep = valid.nonzero().squeeze(1)
        ties = None if shard.ties is None else shard.ties[rows[keep]]
        probs, hits, _ = _score_perturbations(model, images01[keep], normalized[keep], scored[keep],
                                              _evaluation_steps(size * size), batch_size, precision, ties)
        clean = shard.clean_probs[rows[keep]].gather(1, scored[keep, None])[:, 0]
        clean_hit = shard.clean_top1[rows[keep]] == scored[keep]
        metrics = _metrics_from_scores(probs, hits, clean, clean_hit, shard.black_probs[scored[keep]],
                                       constant[keep], ltx_code)
        for name, values in metrics.items():
            results[name][keep.cpu().numpy()] = values.cpu().numpy()
    return results


def score_variants(
    model: Callable[[Tensor], Tensor],
    shard: ShardImages,
    maps_by_variant: dict[str, Tensor | np.ndarray],
    *,
    ltx_code: bool = False,
    batch_size: int = 256,
    precision: str = "fp32",
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`score_maps` for one method's maps of every variant, scoring each (image, scored class, map) once.

    Where an image's map and scored class in a variant equal those of an earlier variant (a baseline explaining a
    correctly classified image: the same map for 'target' and 'predicted'), its values are copied from there; only
    the other images are scored (``scored`` in each variant's result marks them). The values equal those of scoring every variant in full (the engine's per-input
    results do not depend on what else is in a batch on the CPU; on a GPU they may differ in the last bits).
    """
    results: dict[str, dict[str, np.ndarray]] = {}
    seen: list[tuple[Tensor, Tensor, dict[str, np.ndarray]]] = []  # (maps, scored classes, results) so far
    for variant, maps in maps_by_variant.items():
        maps = torch.as_tensor(maps).to(shard.images01.device)
        classes = shard.classes(variant)
        scored = shard.labels if ltx_code else classes
        copies = []  # (images to copy, from which earlier result)
        copied = torch.zeros(len(classes), dtype=torch.bool, device=classes.device)
        for earlier_maps, earlier_scored, earlier in seen:
            same = ~copied & (scored == earlier_scored) & (maps == earlier_maps).flatten(1).all(dim=1)
            copies.append((same.cpu().numpy(), earlier))
            copied |= same
        todo = (~copied).nonzero().squeeze(1)
        fresh = score_maps(model, shard, maps[todo], classes[todo], ltx_code=ltx_code, batch_size=batch_size,
                           precision=precision, rows=todo)
        merged = {name: np.empty(len(classes), dtype=values.dtype) for name, values in fresh.items()}
        for name in merged:
            merged[name][todo.cpu().numpy()] = fresh[name]
            for same, earlier in copies:
                merged[name][same] = earlier[name][same]
        merged["scored"] = ~copied.cpu().numpy()
        results[variant] = merged
        seen.append((maps, scored, merged))
    return results


def evaluate_batch(
    model: Callable[[Tensor], Tensor],
    images01: Tensor,
    maps: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    classes: Tensor | np.ndarray,
    ltx_code: bool = False,
    batch_size: int = 256,
    precision: str = "fp32",
    *,
    ties: Tensor | None = None,
) -> dict[str, np.ndarray]:
    """:func:`score_maps` of one map per image, the shared forwards included: ``ties`` are the images' tie
    permutations (:meth:`TieBreak.permutations`, (B, S*S)); None breaks ties in raster order."""
    shard = prepare_shard(model, images01, labels, ties=ties, batch_size=batch_size, precision=precision)
    return score_maps(model, shard, maps, classes, ltx_code=ltx_code, batch_size=batch_size, precision=precision)


@torch.inference_mode()
def pos_auc_per_image(
    model: Callable[[Tensor], Tensor],
    images01: Tensor,
    normalized_maps: Tensor,
    classes: Tensor,
    batch_size: int = 256,
    *,
    precision: str = "fp32",
    ties: Tensor | None = None,
    clean_hits: Tensor | None = None,
) -> Tensor:
    """Per-image POS accuracy AUC (x100, fractions 0..0.9, float64) for maps already at input resolution.

    Only the order of the map values matters, so any monotone rescaling (a raw sigmoid map, a min-max normalised map)
    gives the same value. ``ties`` as for :func:`evaluate_batch`. ``clean_hits`` (B,), whether the clean image is
    classified as ``classes``, saves the fraction-0 forward when a caller scores many maps of the same images (EEA's
    steps). Rows with non-finite maps get NaN.
    """
    _check_precision(precision)
    device = _model_device(model, images01.device)
    images01 = images01.to(device)
    size = _square_size(images01)
    maps = normalized_maps.detach().to(device=device, dtype=torch.float32)
    if maps.shape[1:] != (size, size):
        raise ValueError(f"maps must be (B, {size}, {size}) to match the images, got {tuple(maps.shape)}")
    classes = torch.as_tensor(classes, dtype=torch.long, device=device)
    auc = torch.full((images01.shape[0],), float("nan"), device=device, dtype=torch.float64)
    valid = torch.isfinite(maps).flatten(1).all(dim=1)
    if valid.any():
        num_pixels = size * size
        first = 0 if clean_hits is None else 1
        steps = [_Perturbation(_MOST_RELEVANT_FIRST, removed_pixel_count(num_pixels, j))
                 for j in range(first, FRACTION_STEPS)]
        _, hits, _ = _score_perturbations(
            model, images01[valid], maps[valid], classes[valid], steps, batch_size, precision,
            None if ties is None else ties[valid.to(ties.device)],
        )
        if clean_hits is not None:
            hits = torch.cat([clean_hits.to(device)[valid, None], hits], dim=1)
        auc[valid] = _auc(hits.double())
    return auc


PER_IMAGE_COLUMNS = ["image_id", "label", "class", "valid", "constant", "correct", *METRICS]


def per_image_frame(image_ids, shard: ShardImages, classes: Tensor, result: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per image of a :func:`score_maps` result, in the per-image CSV's columns."""
    frame = pd.DataFrame({
        "image_id": [str(image_id) for image_id in image_ids],
        "label": shard.labels.cpu().numpy().astype(np.int64),
        "class": torch.as_tensor(classes).cpu().numpy().astype(np.int64),
        "valid": result["valid"],
        "constant": result["constant"],
        "correct": result["correct"],
    })
    for name in METRICS:
        frame[name] = result[name]
    return frame[PER_IMAGE_COLUMNS]


def _evaluation_steps(num_pixels: int) -> list[_Perturbation]:
    """Inputs per map for :func:`score_maps`: soft-masked, POS removals 0.1..0.9, NEG removals 0.1..0.9.

    POS and DEL share the POS images, NEG and INS the NEG images; the clean and the all-black image come from the
    shard (:func:`prepare_shard`), once per image and once per job.
    """
    removals = [removed_pixel_count(num_pixels, j) for j in range(1, FRACTION_STEPS)]
    return [
        _Perturbation(soft_mask=True),
        *(_Perturbation(_MOST_RELEVANT_FIRST, k) for k in removals),
        *(_Perturbation(_LEAST_RELEVANT_FIRST, k) for k in removals),
    ]


def _metrics_from_scores(
    probs: Tensor,
    hits: Tensor,
    clean_prob: Tensor,
    clean_hit: Tensor,
    black_prob: Tensor,
    constant: Tensor,
    ltx_code: bool,
) -> dict[str, Tensor]:
    """Turn the (B, steps) probability and hit tables of :func:`_evaluation_steps`, with the clean and black scores,
    into per-image float64 metrics."""
    probs, clean_prob, black = probs.double(), clean_prob.double()[:, None], black_prob.double()[:, None]
    clean_hit = clean_hit.double()[:, None]
    # An all-ones mask leaves the image unchanged, so O is Y by definition there (no second forward to differ in the
    # last bit, which would turn PIC's strict Y < O into noise).
    masked_prob = torch.where(constant, clean_prob[:, 0], probs[:, _SOFT])
    # A clean probability that underflows to 0 cannot drop further: ADP is 0 there instead of 0/0.
    drop = (clean_prob[:, 0] - masked_prob).clamp(min=0.0)
    adp = torch.where(clean_prob[:, 0] > 0, 100.0 * drop / clean_prob[:, 0].clamp(min=torch.finfo(probs.dtype).tiny),
                      0.0)
    pic = 100.0 * (clean_prob[:, 0] < masked_prob).double()

    pos_probs = torch.cat([clean_prob, probs[:, _POS_STEPS]], dim=1)
    neg_probs = torch.cat([clean_prob, probs[:, _NEG_STEPS]], dim=1)
    pos_hits = torch.cat([clean_hit, hits[:, _POS_STEPS].double()], dim=1)
    neg_hits = torch.cat([clean_hit, hits[:, _NEG_STEPS].double()], dim=1)
    if ltx_code:
        deletion, insertion = _auc(pos_probs), _auc(neg_probs)
    else:
        deletion = _auc(torch.cat([pos_probs, black], dim=1))
        # Revealed fraction f shows what the NEG removal of 1 - f leaves: black, NEG 0.9, ..., NEG 0.1, clean.
        insertion = _auc(torch.cat([black, neg_probs.flip(1)], dim=1))
    return {"ADP": adp, "PIC": pic, "POS": _auc(pos_hits), "NEG": _auc(neg_hits), "DEL": deletion, "INS": insertion}


def _auc(curves: Tensor) -> Tensor:
    """100 x trapezoid area of each row, sampled every 0.1."""
    return 100.0 * torch.trapezoid(curves, dx=_FRACTION_STEP, dim=1)


def _score_perturbations(
    model, images01: Tensor, maps01: Tensor, scored: Tensor, steps: list[_Perturbation], batch_size: int, precision: str,
    ties: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Score every (image, step) input in forward passes of ``batch_size`` inputs (fewer where they would not fit
    in the job's memory budget, :mod:`eea_repro.models.memory`).

    Returns (B, steps) tables: p_scored (fp32), argmax == scored, and argmax.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count, size = images01.shape[0], images01.shape[-1]
    batch_size = inference_chunk(model, batch_size, size, images01.device)
    num_pixels = size * size
    ranks = pixel_ranks(maps01, ties) if any(not step.soft_mask for step in steps) else None
    step_order = torch.tensor([step.order for step in steps], device=images01.device)
    step_removed = torch.tensor([step.removed for step in steps], device=images01.device, dtype=torch.int32)
    step_soft = torch.tensor([step.soft_mask for step in steps], device=images01.device)
    total = count * len(steps)
    image_of_input = torch.arange(count, device=images01.device).repeat_interleave(len(steps))
    step_of_input = torch.arange(len(steps), device=images01.device).repeat(count)

    probs = torch.empty(total, device=images01.device)
    top1 = torch.empty(total, dtype=torch.long, device=images01.device)
    for start in range(0, total, batch_size):
        image = image_of_input[start:start + batch_size]
        step = step_of_input[start:start + batch_size]
        multiplier = maps01[image].flatten(1) if step_soft[step].any() else None
        if ranks is not None:
            image_ranks, removed = ranks[image], step_removed[step, None]
            kept = torch.where(step_order[step, None] == _MOST_RELEVANT_FIRST, image_ranks >= removed,
                               image_ranks < num_pixels - removed).to(images01.dtype)
            multiplier = kept if multiplier is None else torch.where(step_soft[step, None], multiplier, kept)
        inputs = images01[image] * multiplier.view(-1, 1, size, size)
        chunk_probs, chunk_top1 = _class_probs(model, inputs, scored[image], precision)
        probs[start:start + batch_size] = chunk_probs
        top1[start:start + batch_size] = chunk_top1
    probs = probs.view(count, len(steps))
    top1 = top1.view(count, len(steps))
    return probs, top1 == scored[:, None], top1


def _class_probs(model, inputs: Tensor, scored: Tensor, precision: str) -> tuple[Tensor, Tensor]:
    logits = _logits(model, inputs, precision)
    probs = logits.softmax(dim=-1).gather(1, scored[:, None]).squeeze(1)
    return probs, logits.argmax(dim=-1)


def _logits(model, inputs: Tensor, precision: str) -> Tensor:
    """fp32 logits of one forward (bf16 autocast when asked)."""
    with autocast(inputs.device, precision):
        return model(inputs).float()


@torch.inference_mode()
def _clean_top1(model, images01: Tensor, batch_size: int, precision: str) -> Tensor:
    _check_precision(precision)
    batch_size = inference_chunk(model, batch_size, images01.shape[-1], images01.device)
    predictions = [_logits(model, chunk, precision).argmax(dim=-1) for chunk in images01.split(batch_size)]
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=images01.device)
    return torch.cat(predictions)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")


def _model_device(model, fallback: torch.device) -> torch.device:
    """The device of the model's weights; a parameter-free model runs wherever the inputs are."""
    parameters = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
    first = next(parameters, None)
    return first.device if first is not None else fallback


def _square_size(images01: Tensor) -> int:
    if images01.dim() != 4 or images01.shape[1] != 3 or images01.shape[2] != images01.shape[3]:
        raise ValueError(f"images must be (B, 3, S, S), got shape {tuple(images01.shape)}")
    return images01.shape[-1]
