"""Benchmark 6, ``kernels``: the explained model's forward throughput under the CPU options a metric job could take
(inference mode, channels-last, ``torch.compile`` with its compile time, one or two threads), side by side."""

from __future__ import annotations

import time

import torch

from eea_repro.bench.common import best_time, random_model
from eea_repro.models.network import compile_model


def bench_kernels(model_cfg: dict, num_classes: int, *, images: int, batch_size: int, repeats: int) -> dict:
    """Forward throughput (inputs/s) of the explained model on the CPU, fp32, under each option, side by side; the
    compiled model's first call (the compile, which every job would pay) is timed on its own."""
    device = torch.device("cpu")
    model = random_model(model_cfg, num_classes, device)
    inputs = torch.rand(images, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()

    def forwards(net, data, mode=torch.inference_mode):
        def run():
            with mode():
                for chunk in data.split(batch_size):
                    net(chunk)
        return run

    rates, extra = {}, {}
    torch.set_num_threads(1)
    try:
        rates["no_grad, 1 thread"] = images / best_time(forwards(model, inputs, torch.no_grad), device, repeats)
        rates["inference_mode, 1 thread"] = images / best_time(forwards(model, inputs), device, repeats)
        last = random_model(model_cfg, num_classes, device).to(memory_format=torch.channels_last)
        rates["channels_last, 1 thread"] = images / best_time(
            forwards(last, inputs.contiguous(memory_format=torch.channels_last)), device, repeats)
        compiled = compile_model(model, True)
        started = time.perf_counter()
        forwards(compiled, inputs[:batch_size])()
        extra["compile_seconds"] = time.perf_counter() - started
        rates["torch.compile, 1 thread"] = images / best_time(forwards(compiled, inputs), device, repeats)
        torch.set_num_threads(2)
        rates["inference_mode, 2 threads"] = images / best_time(forwards(model, inputs), device, repeats)
    finally:
        torch.set_num_threads(threads)
    return {"images": images, "inputs_per_s": rates, **extra}
