"""Device binding with one visible device: two jobs started together take turns on it (``bound_gpus`` waits for the
device's lock; it never hands out a device twice), and each computes on it what the CPU computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from gpu.device_helpers import CHECK_DEVICE_VARIABLE
from eea_repro.workflow.gpu_slots import visible_devices

pytestmark = pytest.mark.gpu

# Max |difference| of a 64x64 fp32 matrix product (entries of size ~8) on the device against the CPU: reduction order.
PRODUCT_TOLERANCE = 1e-3
HOLD_S = 1.0
# A job: wait for the common start, bind one device, compute on it while holding it, report what it saw.
JOB = """
import json, os, sys, time
import torch
from eea_repro.workflow.gpu_slots import bound_gpus
lock_dir, go_at, hold_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, go_at - time.time()))
with bound_gpus(1, lock_dir, timeout_s=120, poll_s=0.05, log=lambda _: None) as devices:
    start = time.time()
    device = torch.device(os.environ["EEA_CHECK_DEVICE"])
    matrix = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    product = (matrix.to(device) @ matrix.to(device)).cpu()
    seen = torch.cuda.device_count() if device.type == "cuda" else None
    time.sleep(hold_s)
    end = time.time()
print(json.dumps({"devices": devices, "visible": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": end,
                  "device_count": seen, "difference": (product - matrix @ matrix).abs().max().item()}))
"""


def the_one_device(device: torch.device) -> str:
    """The name of the checked device in CUDA_VISIBLE_DEVICES terms; on a CPU any name does (the locks are names)."""
    if device.type != "cuda":
        return "0"
    return visible_devices()[device.index or 0]


def test_two_jobs_on_one_device_take_turns(device, tmp_path):
    name = the_one_device(device)
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": name, CHECK_DEVICE_VARIABLE: device.type}
    environ.pop("SLURM_JOB_ID", None)  # under Slurm the binding steps aside
    go_at = time.time() + 1.0
    jobs = [subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "locks"), str(go_at), str(HOLD_S)],
                             env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    reports = []
    for job in jobs:
        stdout, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr[-2000:]
        reports.append(json.loads(stdout))
    first, second = sorted(reports, key=lambda report: report["start"])
    for report in reports:
        assert report["devices"] == [name] and report["visible"] == name
        assert report["difference"] <= PRODUCT_TOLERANCE
        if device.type == "cuda":
            assert report["device_count"] == 1  # the job sees the bound device only
    assert second["start"] >= first["end"]  # the second waited for the first to let go
