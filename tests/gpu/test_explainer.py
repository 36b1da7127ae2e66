"""EEA on the device against the CPU: explainer pretraining (pEEA) and the batched per-image fine-tuning (EEA)."""

from __future__ import annotations

import pytest
import torch

from gpu.device_helpers import CPU, NUM_CLASSES, SPECS, agreement, moved, tiny_images, tiny_model
from eea_repro.explainer.finetuning import finetune_maps
from eea_repro.explainer.network import MaskExplainer, explain
from eea_repro.explainer.pretraining import pretrain
from eea_repro.metrics.pixel_order import TieBreak

pytestmark = pytest.mark.gpu

# Relative difference of each epoch's mean loss: TF32 convolutions round at 5e-4, and two epochs add little to it.
LOSS_RTOL = 1e-3
# Max |difference| of the explainer's masks in (0, 1): AdamW's first steps move a weight by about lr whatever the size
# of its gradient, so rounding on near-zero gradients becomes weight differences of lr; on the CPU a 5e-4 input
# change moves these masks by 7e-4 at most after pretraining and 2e-4 after fine-tuning.
MASK_TOLERANCE = 0.01
# Share of images whose best fine-tuning step (chosen by POS, an accuracy curve) is the same: one image in eight may
# sit on an argmax tie.
BEST_STEP_AGREEMENT = 0.85
IMAGES = 8
FINETUNE = dict(steps=3, lr=0.01, lam=1.0, size_loss="ltx", chunk_size=4)  # two chunks of four; lr 0.05 is chaotic


def explainer_pair(family: str):
    """The explained model and an explainer started from its weights, both on the CPU and seeded."""
    explained = tiny_model(family)
    torch.manual_seed(3)
    return MaskExplainer(SPECS[family], explained.net.state_dict(), NUM_CLASSES), explained


def pretrained(family: str, device: torch.device, folder) -> tuple[MaskExplainer, dict]:
    explainer, explained = (moved(module, device) for module in explainer_pair(family))
    images = tiny_images(IMAGES)
    labels = torch.randint(NUM_CLASSES, (IMAGES,), generator=torch.Generator().manual_seed(4))

    def batches(epoch):
        order = torch.randperm(IMAGES, generator=torch.Generator().manual_seed(epoch))
        return [(images[order[start:start + 4]], labels[order[start:start + 4]]) for start in range(0, IMAGES, 4)]

    history = pretrain(explainer, explained, batches, images[:4], labels[:4], variant="target", lam=2.0,
                       size_loss="ltx", lr=1e-3, weight_decay=0.01, epochs=2, checkpoint_dir=folder,
                       log=lambda line: None)
    return explainer, history


@pytest.mark.parametrize("family", SPECS)
def test_pretraining_on_the_device_matches_the_cpu(device, family, tmp_path):
    # a folder each: pretraining resumes from a checkpoint it finds
    (on_cpu, cpu_history), (on_device, device_history) = (pretrained(family, where, tmp_path / side)
                                                         for side, where in (("cpu", CPU), ("device", device)))
    cpu_losses = torch.tensor([epoch["loss"] for epoch in cpu_history["epochs"]])
    device_losses = torch.tensor([epoch["loss"] for epoch in device_history["epochs"]])
    torch.testing.assert_close(device_losses, cpu_losses, rtol=LOSS_RTOL, atol=0)
    assert next(on_device.parameters()).device.type == device.type
    images = tiny_images(IMAGES, seed=5)
    difference = (explain(on_device, images.to(device)).cpu() - explain(on_cpu, images)).abs().max().item()
    assert difference <= MASK_TOLERANCE


@pytest.mark.parametrize("family", SPECS)
def test_finetuning_on_the_device_matches_the_cpu(device, family):
    images = tiny_images(IMAGES, seed=6)
    ties = TieBreak("random", 0).permutations([f"image{i}" for i in range(IMAGES)], images.shape[-1] ** 2)
    classes = tiny_model(family)(images).argmax(1)  # one explained class per image on both sides
    results = []
    for where in (CPU, device):
        explainer, explained = (moved(module, where) for module in explainer_pair(family))
        on_where = images.to(where), classes.to(where)
        last, _ = finetune_maps(explainer, explained, *on_where, keep="last", **FINETUNE)
        best, info = finetune_maps(explainer, explained, *on_where, ties=ties, **FINETUNE)
        assert last.device.type == where.type
        results.append((last.cpu(), best.cpu(), info["best_step"].cpu()))
    (cpu_last, cpu_best, cpu_steps), (device_last, device_best, device_steps) = results
    assert (device_last - cpu_last).abs().max().item() <= MASK_TOLERANCE  # the same AdamW steps, no selection
    assert agreement(cpu_steps, device_steps) >= BEST_STEP_AGREEMENT
    same_step = cpu_steps == device_steps
    assert (device_best[same_step] - cpu_best[same_step]).abs().max().item() <= MASK_TOLERANCE
