"""The checked device: ``EEA_CHECK_DEVICE`` (default ``cuda``), set up as the workflow's jobs set theirs; every test
that asks for it is skipped with the reason where it is a CUDA device and none is visible."""

from __future__ import annotations

import pytest
import torch

from gpu.device_helpers import checked_device_name
from eea_repro.models.network import resolve_device

NO_CUDA_REASON = ("no CUDA device here: these run in `python -m eea_repro.bench.gpu_check OUT` on a GPU machine "
                  "(or CPU against CPU with EEA_CHECK_DEVICE=cpu)")


@pytest.fixture(scope="session")
def device() -> torch.device:
    name = checked_device_name()
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        pytest.skip(NO_CUDA_REASON)
    return resolve_device(name)  # the jobs' deterministic mode, as a workflow job on this device runs
