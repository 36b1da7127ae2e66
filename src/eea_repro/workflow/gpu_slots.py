"""Bind each GPU job to its own free device(s).

Snakemake's ``--resources gpu=N`` only caps how many GPU units run at once; it never tells a job *which* device to
use, so every concurrent job would pick ``cuda:0``. ``bound_gpus`` closes that gap: it takes one ``fcntl.flock`` per
device on a lock file shared by all jobs of the run and exports ``CUDA_VISIBLE_DEVICES`` for the job. The kernel
drops a flock when its process dies, so a killed job never leaves a stale lock behind.

``CUDA_VISIBLE_DEVICES`` is read once, when CUDA is first initialised in a process. The binding must therefore happen
before any CUDA use in the job (the job wrapper ``eea_repro.workflow.logs.job_context`` runs it first); children started
afterwards inherit the variable.

Under Slurm the scheduler already binds devices (``--gpus``/``--gres`` set ``CUDA_VISIBLE_DEVICES``), so the
binding steps aside there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path

Probe = Callable[[], "int | Sequence[str]"]


class GpuSlotTimeout(TimeoutError):
    """No set of free devices could be locked in time."""


def parse_visible_devices(value: str) -> list[str]:
    """Entries of a ``CUDA_VISIBLE_DEVICES`` value, as CUDA reads them.

    CUDA ignores everything from the first invalid (negative) entry on, which is why ``""`` and ``"-1"`` both mean
    "no device". Entries may be indices or UUIDs (``GPU-…``, ``MIG-…``) and are kept verbatim.
    """
    devices = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices


def parse_nvidia_smi_list(text: str) -> list[str]:
    """Device names from ``nvidia-smi -L``: a GPU's index, or the UUIDs of its MIG instances.

    A GPU in MIG mode only exposes an instance to CUDA when ``CUDA_VISIBLE_DEVICES`` names it by UUID, so each
    instance becomes a bindable device of its own.
    """
    devices: list[str] = []
    for line in text.splitlines():
        gpu = re.match(r"\s*GPU (\d+):", line)
        mig = re.match(r"\s+MIG .*\(UUID: (MIG-[^)\s]+)\)", line)
        if gpu:
            devices.append(gpu.group(1))
        elif mig:
            if devices and not devices[-1].startswith("MIG-"):
                devices.pop()  # the parent GPU is replaced by its instances
            devices.append(mig.group(1))
    return devices


GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd")


def probe_devices() -> list[str]:
    """Devices of this machine, found without initialising CUDA in this process.

    ``nvidia-smi`` runs in its own process; without it, ``torch.cuda.device_count()`` runs in a child process,
    because in this one it may initialise the CUDA driver and freeze the device set before we bind.
    """
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi:
        try:
            listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30, check=True)
            return parse_nvidia_smi_list(listing.stdout)
        except (OSError, subprocess.SubprocessError):
            return []
    if not any(os.path.exists(driver) for driver in GPU_DRIVER_PATHS):
        return []  # no GPU driver loaded: skip the seconds a child torch process would cost every job
    try:
        import torch
    except ImportError:
        return []
    if torch.version.cuda is None and torch.version.hip is None:
        return []
    try:
        counted = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
            capture_output=True, text=True, timeout=120, check=True,
        )
        return [str(index) for index in range(int(counted.stdout.split()[-1]))]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def visible_devices(environ: MutableMapping[str, str] = os.environ, probe: Probe | None = None) -> list[str]:
    """The devices the user allows: ``CUDA_VISIBLE_DEVICES`` if set, else what ``probe`` finds (a count or names)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"])
    found = (probe or probe_devices)()
    if isinstance(found, int):
        return [str(index) for index in range(found)]
    return [str(device) for device in found]


def lock_path(lock_dir: str | Path, device: str) -> Path:
    """One lock file per device; UUIDs (and old-style MIG names with slashes) become safe file names."""
    return Path(lock_dir) / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.lock"


def _try_lock(path: Path) -> int | None:
    """A held exclusive flock on ``path`` (its file descriptor), or None if another process holds it."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    os.ftruncate(handle, 0)
    os.write(handle, f"{os.getpid()}\n".encode())  # who holds it, for a human looking at the lock dir
    return handle


def _release(handles: Sequence[int]) -> None:
    for handle in handles:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _lock_free_devices(devices: Sequence[str], count: int, lock_dir: Path) -> tuple[list[str], list[int]]:
    """Lock ``count`` free devices in one scan, or none at all (a partial set is released at once).

    All-or-nothing keeps multi-GPU jobs from deadlocking each other while each holds part of what it needs.
    """
    chosen: list[str] = []
    handles: list[int] = []
    for device in devices:
        handle = _try_lock(lock_path(lock_dir, device))
        if handle is not None:
            chosen.append(device)
            handles.append(handle)
            if len(chosen) == count:
                return chosen, handles
    _release(handles)
    return [], []


def _warn_if_cuda_initialised(log: Callable[[str], object]) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        log("warning: CUDA was initialised before the GPU binding; CUDA_VISIBLE_DEVICES has no effect in this process")


@contextlib.contextmanager
def bound_gpus(
    count: int,
    lock_dir: str | Path,
    *,
    environ: MutableMapping[str, str] = os.environ,
    devices: Sequence[str] | None = None,
    timeout_s: float = 600,
    poll_s: float = 0.2,
    log: Callable[[str], object] = print,
) -> Iterator[list[str]]:
    """Hold ``count`` free devices for the block, exported as ``CUDA_VISIBLE_DEVICES``; yield their names.

    ``devices`` defaults to ``visible_devices(environ)``, so a user restriction (``CUDA_VISIBLE_DEVICES=2,3``) is
    respected and its naming (indices or UUIDs) is kept. ``count == 0`` or no device at all changes nothing and
    yields ``[]`` (the job runs on the CPU). Under Slurm the devices Slurm assigned are yielded untouched.
    Raises ``GpuSlotTimeout`` when ``count`` devices are not free within ``timeout_s``.
    """
    if count <= 0:
        yield []
        return
    if "SLURM_JOB_ID" in environ:
        assigned = parse_visible_devices(environ.get("CUDA_VISIBLE_DEVICES", ""))
        log(f"Slurm job {environ['SLURM_JOB_ID']}: using the GPU(s) Slurm assigned: {','.join(assigned) or 'none'}")
        yield assigned
        return
    devices = list(visible_devices(environ) if devices is None else devices)
    if not devices:
        log(f"no GPU visible; the job asked for {count} and runs without one")
        yield []
        return
    lock_dir = Path(lock_dir)
    if count > len(devices):
        raise ValueError(f"a job needs {count} GPU(s) but only {len(devices)} are visible ({','.join(devices)})")
    _warn_if_cuda_initialised(log)
    lock_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while True:
        chosen, handles = _lock_free_devices(devices, count, lock_dir)
        if chosen:
            break
        waited = time.monotonic() - started
        if waited >= timeout_s:
            raise GpuSlotTimeout(
                f"no {count} free GPU(s) among {','.join(devices)} after {timeout_s:g} s (locks in {lock_dir})"
            )
        time.sleep(min(poll_s * random.uniform(0.5, 1.5), timeout_s - waited))
    previous = environ.get("CUDA_VISIBLE_DEVICES")
    try:
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        log(f"bound to GPU(s) {','.join(chosen)} after {time.monotonic() - started:.1f} s (locks in {lock_dir})")
        yield chosen
    finally:
        if previous is None:
            environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            environ["CUDA_VISIBLE_DEVICES"] = previous
        _release(handles)
