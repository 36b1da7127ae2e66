"""The run's numerics: which CPU kernels compute, so that one config gives the same bits on any x86-64 CPU.

PyTorch's pip wheels pick their CPU kernels per machine through three separate selectors, and a different last bit
early in training grows into a different explainer (a one-bit change acts like another seed). ``numerics: portable``
pins each of them to a path that every x86-64 CPU with AVX2 runs alike, Intel or AMD:

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (softmax among them) use AVX2, never AVX-512;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's convolutions (and GELU) are generated for AVX2 at most;
- ``MKL_CBWR=COMPATIBLE``: MKL's matrix products (``nn.Linear``, attention's bmm) take MKL's vendor-neutral path.
  A named branch such as ``AVX2`` is not enough: on AMD CPUs MKL ignores it and dispatches as it likes (``AUTO``).

On this project's AVX-512 machine each selector, left free, changes the bits of some operation of the embedded
models (docs/reproducibility.md). MKL's and OpenMP's dynamic thread adjustment are off in both modes, as
the job's thread count is fixed by the rule. The variables must be set before torch is loaded, so the Snakefile
exports them for the jobs it starts (locally and, as Slurm passes the submitting environment on, on a cluster); a
value the user has set is kept, and the job's log shows what was in force.

``native`` lets every library pick the fastest kernels of the machine: bit-identical reruns on one machine, other
bits elsewhere. On a GPU neither mode promises more than the same bits on the same GPU model, driver and libraries:
CUDA kernels differ between GPU generations, and no switch pins them.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import MutableMapping
from functools import cache
from pathlib import Path

MODES = ("portable", "native")
MODE_VARIABLE = "EEA_NUMERICS"  # tells a job's torch set-up which mode the workflow runs in

FIXED_THREADS_ENV = {"MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
} | FIXED_THREADS_ENV
# What a job's log shows: the pinned selectors, the thread settings and what cuBLAS needs to be deterministic.
SHOWN_VARIABLES = (*PORTABLE_ENV, "OMP_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def job_environment(mode: str) -> dict[str, str]:
    """The environment variables a job of ``mode`` needs before it loads torch."""
    if mode not in MODES:
        raise ValueError(f"numerics must be one of {MODES}, not {mode!r}")
    pinned = PORTABLE_ENV if mode == "portable" else FIXED_THREADS_ENV
    # cuBLAS picks nondeterministic reductions unless its workspace is fixed; torch's deterministic mode requires it.
    return {MODE_VARIABLE: mode, **pinned, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def export_numerics_settings(mode: str, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set ``mode``'s variables in ``environ`` where the user has not set them; returns what is in effect."""
    wanted = job_environment(mode)
    for name, value in wanted.items():
        if name == MODE_VARIABLE:
            environ[name] = value  # the config decides the mode, not a leftover variable
        else:
            environ.setdefault(name, value)
    return {name: environ[name] for name in wanted}


@cache
def _cpuinfo(field: str) -> str | None:
    """A field of the first CPU in /proc/cpuinfo (Linux), read once per process; None elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    match = re.search(rf"^{field}\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), re.MULTILINE)
    return match.group(1).strip() if match else None


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (Linux), else what the platform module knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_vector_extensions() -> str:
    """The vector instruction sets that decide which kernels a native run takes (AVX2, AVX-512 parts)."""
    flags = _cpuinfo("flags")
    if flags is None:
        return "unknown"
    present = set(flags.split())
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile") if f in present]
    return " ".join(shown) or "none of avx2/avx512"


def settings_in_force(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Each shown variable's value in this process, or 'unset'."""
    return {name: environ.get(name, "unset") for name in SHOWN_VARIABLES}


def header_lines(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """What every job's log starts with (no torch needed): the machine and the numerics settings in force."""
    mode = environ.get(MODE_VARIABLE, "unset")
    departures = [name for name, value in PORTABLE_ENV.items() if environ.get(name) != value]
    lines = [f"numerics: {mode}; CPU: {cpu_model()} ({cpu_vector_extensions()})",
             "settings: " + ", ".join(f"{k}={v}" for k, v in settings_in_force(environ).items())]
    if mode == "portable" and departures:
        lines.append(f"warning: set in the environment against numerics: portable: {', '.join(departures)}; "
                     "this job's bits may differ on another CPU")
    return lines


def configure_torch(device) -> list[str]:
    """Put torch in the run's deterministic mode for ``device``; returns the kernel choices torch made.

    Deterministic algorithms make CUDA's scatter/index kernels and cuDNN reproducible on one GPU; on a CPU our
    operations are deterministic already. Not filling new tensors with NaN: no code reads uninitialised memory, and the
    fill would cost a pass over every new tensor.
    """
    import torch
    import torch.utils.deterministic

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    return kernel_lines(device)


def kernel_lines(device) -> list[str]:
    """The kernels torch selected in this process: ATen's CPU capability, the MKL and oneDNN builds, threads."""
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([^\s-]+)", config)
    onednn = re.search(r"MKL-DNN (v[\d.]+)", config)
    lines = [f"torch {torch.__version__}: ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, "
             f"MKL {mkl.group(1) if mkl else 'absent'}, oneDNN {onednn.group(1) if onednn else 'absent'} "
             f"(enabled: {torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled}), "
             f"{torch.get_num_threads()} thread(s), deterministic algorithms: "
             f"{torch.are_deterministic_algorithms_enabled()}"]
    if getattr(device, "type", str(device)) == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
                     f"cuDNN {torch.backends.cudnn.version()}: same bits promised on this GPU model and software only")
    return lines


def machine_record(device) -> dict[str, str]:
    """Where a result was computed, for a job's JSON record (left out of the results manifest's hashes)."""
    return {"cpu": f"{cpu_model()} ({cpu_vector_extensions()})", "kernels": "; ".join(kernel_lines(device))}


def compiles_for_host(mode: str, device) -> bool:
    """Whether torch.compile may run: never on a CPU in a portable run (it generates code for the host CPU)."""
    return not (mode == "portable" and getattr(device, "type", str(device)) == "cpu")


def fingerprint() -> dict[str, str]:
    """sha256 (12 hex digits) of small fixed computations, one per kernel family a selector governs: compare two
    machines' fingerprints (``python -m eea_repro.workflow.numerics`` on each) before comparing whole runs."""
    import hashlib

    import torch
    import torch.nn.functional as F

    def digest(tensor) -> str:
        return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:12]

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(32, 64, 24, 24, generator=generator)
    kernel = torch.randn(64, 64, 3, 3, generator=generator)
    left, right = torch.randn(256, 384, generator=generator), torch.randn(384, 512, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MKL's and ATen's splits of the work depend on the thread count
    try:
        return {
            "convolution (oneDNN)": digest(F.conv2d(features, kernel, padding=1)),
            "matrix product (MKL)": digest(left @ right),
            "softmax (ATen)": digest(torch.softmax(3 * left, dim=-1)),
            "exp (ATen)": digest(torch.exp(left)),
        }
    finally:
        torch.set_num_threads(threads)


def run_mode(environ: MutableMapping[str, str] = os.environ) -> str:
    """The numerics mode this job runs in ('native' outside the workflow, e.g. in a notebook)."""
    return environ.get(MODE_VARIABLE, "native")


def main(argv: list[str] | None = None) -> None:
    """Print this machine's numerics under a mode: settings in force, kernels selected and the fingerprint."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m eea_repro.workflow.numerics", description=main.__doc__)
    parser.add_argument("mode", choices=MODES, nargs="?", default="portable")
    parser.add_argument("--json", action="store_true", help="print only the fingerprint, as JSON")
    args = parser.parse_args(argv)
    export_numerics_settings(args.mode)  # before torch is loaded: the selectors are read once, at first use
    if args.json:
        print(json.dumps(fingerprint()))
        return
    for line in header_lines() + kernel_lines("cpu"):
        print(line)
    for name, value in fingerprint().items():
        print(f"fingerprint {name}: {value}")


if __name__ == "__main__":
    main()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (torch loads here, after the settings above)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
