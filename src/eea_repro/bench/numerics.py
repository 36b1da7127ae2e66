"""Benchmark 8, ``numerics``: a training step and a forward of each model under ``numerics: portable`` against
``native``, each in fresh processes (the kernel selectors are read when torch loads), alternating, best of the
rounds kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from eea_repro.bench.common import best_time
from eea_repro.models.network import ModelSpec, create_network


def numerics_step_times(models: dict[str, dict], num_classes: int, *, images: int, repeats: int) -> dict:
    """Best seconds of one AdamW training step and of one forward per model, at this process's numerics (the worker
    of :func:`bench_numerics`)."""
    device = torch.device("cpu")
    times = {}
    for name, model_cfg in models.items():
        torch.manual_seed(0)
        net = create_network(ModelSpec.from_config(model_cfg), num_classes)
        size = model_cfg["input_size"]
        inputs = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(3))
        labels = torch.randint(0, num_classes, (images,), generator=torch.Generator().manual_seed(4))
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

        def step():
            optimizer.zero_grad()
            F.cross_entropy(net(inputs), labels).backward()
            optimizer.step()

        def forward():
            with torch.inference_mode():
                net(inputs)

        step(), forward()  # warm-up: oneDNN generates its kernels on first use
        times[name] = {"train_step_s": best_time(step, device, repeats),
                       "forward_s": best_time(forward, device, repeats)}
    return times


def bench_numerics(models: dict[str, dict], num_classes: int, *, images: int, repeats: int, rounds: int = 2,
                   threads: int = 2) -> dict:
    """Each model's training step and forward under both numerics modes, in fresh processes side by side."""
    from eea_repro.workflow import numerics

    code = ("import json, sys, torch; from eea_repro.bench.numerics import numerics_step_times; "
            "job = json.load(sys.stdin); torch.set_num_threads(job['threads']); "
            "print(json.dumps(numerics_step_times(job['models'], job['num_classes'], images=job['images'], "
            "repeats=job['repeats'])))")
    job = json.dumps({"models": models, "num_classes": num_classes, "images": images, "repeats": repeats,
                      "threads": threads})
    best: dict[str, dict] = {mode: {} for mode in numerics.MODES}
    for _ in range(rounds):
        for mode in numerics.MODES:
            env = {k: v for k, v in os.environ.items() if k not in numerics.SHOWN_VARIABLES}
            numerics.export_numerics_settings(mode, env)
            out = subprocess.run([sys.executable, "-c", code], input=job, env=env, check=True, capture_output=True,
                                 text=True)
            for model, figures in json.loads(out.stdout).items():
                kept = best[mode].setdefault(model, figures)
                best[mode][model] = {k: min(v, kept[k]) for k, v in figures.items()}
    return {"images": images, "threads": threads, "seconds": best}
