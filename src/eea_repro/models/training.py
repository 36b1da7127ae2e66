"""Training of the explained classifiers for the embedded dataset (the paper uses pretrained timm weights instead)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from eea_repro.workflow.io import atomic_path
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips: the embedded classes (shape + texture) are flip-invariant."""
    flip = torch.rand(images.shape[0], generator=generator, device="cpu").to(images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


@torch.inference_mode()
@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's top-1 class of each image (on the CPU), in batches on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[start : start + batch_size].to(device)).argmax(1).cpu()
                      for start in range(0, len(images), batch_size)])


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    if not len(images):
        return 0.0
    return (predict(model, images, batch_size) == labels.cpu()).sum().item() / len(images)


def train_epoch(model, images: torch.Tensor, labels: torch.Tensor, optimizer, generator: torch.Generator, *,
                batch_size: int, augment=None, label_smoothing: float = 0.0, scheduler=None, progress=None,
                desc: str = "epoch") -> float:
    """One pass of cross-entropy training over (images, labels) in a seeded random order; returns the mean loss.

    ``augment(batch, generator)`` transforms each batch on the model's device; ``scheduler`` steps after every batch.
    """
    device = next(model.parameters()).device
    model.train()
    order = torch.randperm(len(images), generator=generator)
    batches = range(0, len(order), batch_size)
    running = 0.0
    for start in progress(batches, desc=desc) if progress else batches:
        index = order[start : start + batch_size]
        inputs = images[index].to(device)
        if augment is not None:
            inputs = augment(inputs, generator)
        loss = F.cross_entropy(model(inputs), labels[index].to(device), label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        running += loss.item() * len(index)
    return running / len(order)


def train_classifier(
    spec: ModelSpec,
    num_classes: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: torch.device,
    resume_path: str | Path,
    progress=None,
    log=print,
) -> tuple[dict, list[dict]]:
    """Train a timm classifier from scratch with AdamW + cosine schedule; resumable from ``resume_path``.

    Returns the weights of the epoch with the best validation accuracy and the per-epoch history.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ExplainedModel(create_network(spec, num_classes), spec).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    train_images, train_labels = train
    steps_per_epoch = -(-len(train_images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    history: list[dict] = []
    best = {"accuracy": -1.0, "state": None}
    start_epoch = 0
    resume_path = Path(resume_path)
    if resume_path.exists():
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        history, best, start_epoch = saved["history"], saved["best"], saved["epoch"]
        log(f"resumed from {resume_path.name} after epoch {start_epoch}")
    for epoch in range(start_epoch, epochs):
        train_loss = train_epoch(model, train_images, train_labels, optimizer, generator, batch_size=batch_size,
                                 augment=_augment, label_smoothing=0.05, scheduler=scheduler, progress=progress,
                                 desc=f"epoch {epoch + 1}/{epochs}")
        val_accuracy = accuracy(model, *val)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_accuracy})
        log(f"epoch {epoch + 1}: train loss {train_loss:.4f}, val accuracy {val_accuracy:.3f}")
        if val_accuracy > best["accuracy"]:
            best = {"accuracy": val_accuracy, "state": {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}}
        with atomic_path(resume_path) as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "best": best,
                    "epoch": epoch + 1,
                },
                tmp,
            )
    return best["state"], history
