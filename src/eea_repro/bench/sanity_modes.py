"""Each repaired sanity test, ours against Quantus's own run of it, side by side in one process: the same random
ResNet-18 (reduced widths, as tests/test_mprt.py), the same images and the same map method on both sides, one thread:

    python -m eea_repro.bench.sanity_modes [--images 16] [--samples 10] [--repeats 2] [--device cpu|cuda]
                                           [--out sanity_modes.json]

Throughput is explained (image, model) pairs per second, noisy copies counted for Smooth MPRT, each side's own
randomized models: ours per residual block (the sanity stage's CNN ``block`` layers), Quantus's per module with
``reset_parameters`` (more of them, so it explains more pairs per run; per pair the two compare the cost of one map
and its comparison). The map method is our FullGrad at the input size, for Smooth MPRT Quantus's own vanilla gradient
on both sides (Quantus 0.6 smooths with ``quantus.explain`` whatever ``explain_func`` it is given). Ours explains the
images' noisy copies ``CHUNK`` at a time, across images and draws; Quantus one noise draw of the batch per call.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SIZE = 64
MODEL = {"family": "cnn", "timm_name": "resnet18", "input_size": SIZE, "mean": [0.485, 0.456, 0.406],
         "std": [0.229, 0.224, 0.225], "timm_kwargs": {"channels": [8, 8, 16, 16], "stem_width": 8}}
CLASSES = 5
MODES = ("bottom_up", "efficient", "smooth")
CHUNK = 32  # noisy copies per explain call, as the sanity jobs explain them (explainer.batch_size, 32 by default)


def _fullgrad(model, inputs, targets, **_) -> np.ndarray:
    """FullGrad of our registry at the input size, (N, 1, H, W) as Quantus takes maps."""
    from eea_repro.methods import compute_maps
    from eea_repro.sanity.similarity import resize_maps

    device = next(model.parameters()).device
    maps = compute_maps("fullgrad", model, torch.as_tensor(inputs, dtype=torch.float32, device=device),
                        torch.as_tensor(targets, device=device))
    return resize_maps(maps.detach().cpu().numpy(), SIZE)[:, None]


def _gradient(model, inputs, targets) -> np.ndarray:
    import quantus

    device = str(next(model.parameters()).device)
    maps = quantus.explain(model, np.asarray(inputs), np.asarray(targets), method="Gradient", device=device)
    return np.asarray(maps).reshape(len(inputs), SIZE, SIZE)


def ours(mode: str, model, images: torch.Tensor, classes: torch.Tensor, samples: int) -> int:
    """One mode's test as the sanity stage runs it; returns the (image, model) pairs it explained."""
    from eea_repro.sanity.mprt import efficient_mprt, image_noise, smoothed_maps
    from eea_repro.sanity.randomization import bottom_up, randomization_layers
    from eea_repro.sanity.runs import run_levels
    from eea_repro.sanity.similarity import MapStack, stack_spearman

    layers = randomization_layers(model, "cnn", "block")
    levels = run_levels(mode, len(layers))
    noise = image_noise(0, range(len(images)), samples - 1, images.shape[1:], images.device)

    def explain(net, batch, rows) -> torch.Tensor:
        maps = _gradient(net, batch.cpu().numpy(), classes[rows].cpu().numpy())
        return torch.as_tensor(maps, device=images.device)

    def maps_of(net) -> np.ndarray:
        if mode == "smooth":
            smoothed = smoothed_maps(lambda batch, rows: explain(net, batch, rows), images, noise, chunk=CHUNK)
            return smoothed.cpu().numpy()
        return _fullgrad(net, images, classes)[:, 0]

    reference = maps_of(model)
    if mode == "efficient":
        efficient_mprt(torch.as_tensor(reference), torch.as_tensor(maps_of(bottom_up(model, levels[-1], layers))))
    else:
        stack = MapStack(reference)
        for level in levels[1:]:
            stack_spearman(stack, MapStack(maps_of(bottom_up(model, level, layers))))
    return len(images) * len(levels) * (samples if mode == "smooth" else 1)


def theirs(mode: str, model, images: torch.Tensor, classes: torch.Tensor, samples: int) -> int:
    """Quantus's run of the same test; returns the (image, model) pairs it explained."""
    import quantus

    common = {"disable_warnings": True, "display_progressbar": False}
    spearman = quantus.similarity_func.correlation_spearman
    if mode == "bottom_up":
        metric = quantus.MPRT(layer_order="bottom_up", abs=False, normalise=False, similarity_func=spearman, **common)
        explain, kwargs = _fullgrad, {}
    elif mode == "efficient":
        metric, explain, kwargs = quantus.EfficientMPRT(**common), _fullgrad, {}
    else:
        metric = quantus.SmoothMPRT(nr_samples=samples, abs=False, normalise=False, similarity_func=spearman, **common)
        explain, kwargs = quantus.explain, {"method": "Gradient"}
    scores = metric(model=model, x_batch=images.cpu().numpy(), y_batch=classes.cpu().numpy(), a_batch=None,
                    explain_func=explain, explain_func_kwargs=kwargs, device=str(images.device),
                    batch_size=len(images))
    if mode == "efficient":
        return 2 * len(images)
    models = len(scores) + (1 if mode == "smooth" else 0)  # Smooth MPRT also smooths a reference of the original
    return len(images) * models * (samples if mode == "smooth" else 1)


def measure(images_count: int = 16, samples: int = 10, repeats: int = 2, device: str = "cpu") -> list[dict]:
    """Best of ``repeats`` runs per side and mode, alternating sides; pairs per second and the ratio."""
    from eea_repro.bench.common import random_model

    torch.set_num_threads(1)
    device = torch.device(device)
    model = random_model(MODEL, CLASSES, device)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(images_count, 3, SIZE, SIZE, generator=generator).to(device)
    classes = torch.randint(CLASSES, (images_count,), generator=generator).to(device)
    rows = []
    for mode in MODES:
        best = {"ours": float("inf"), "quantus": float("inf")}
        pairs = {}
        for _ in range(max(1, repeats)):
            for side, run in (("ours", ours), ("quantus", theirs)):
                np.random.seed(0)
                started = time.perf_counter()
                pairs[side] = run(mode, model, images, classes, samples)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[side] = min(best[side], time.perf_counter() - started)
        rates = {side: pairs[side] / best[side] for side in best}
        rows.append({"mode": mode, "device": str(device), "images": images_count,
                     "samples": samples if mode == "smooth" else 1,
                     "ours_seconds": best["ours"], "ours_pairs": pairs["ours"], "ours_pairs_per_s": rates["ours"],
                     "quantus_seconds": best["quantus"], "quantus_pairs": pairs["quantus"],
                     "quantus_pairs_per_s": rates["quantus"], "ratio": rates["ours"] / rates["quantus"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--samples", type=int, default=10, help="Smooth MPRT's maps per image (Quantus's default: 50)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: the model, images and maps on it")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = measure(args.images, args.samples, args.repeats, args.device)
    print(f"{'mode':<10} {'ours s':>8} {'pairs':>6} {'pairs/s':>8}   "
          f"{'Quantus s':>9} {'pairs':>6} {'pairs/s':>8}   ratio   ({rows[0]['device']})")
    for row in rows:
        print(f"{row['mode']:<10} {row['ours_seconds']:8.2f} {row['ours_pairs']:6d} {row['ours_pairs_per_s']:8.1f}   "
              f"{row['quantus_seconds']:9.2f} {row['quantus_pairs']:6d} {row['quantus_pairs_per_s']:8.1f}   "
              f"{row['ratio']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
