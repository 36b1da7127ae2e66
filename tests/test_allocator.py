"""The allocator settings exported to jobs: set where absent, the user's own values kept, and read by torch."""

import os
import subprocess
import sys

from eea_repro.allocator import JOB_ALLOCATOR_ENV, export_allocator_settings


def test_settings_are_exported_where_absent_and_kept_where_set():
    environ = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    in_effect = export_allocator_settings(environ)
    assert environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    assert environ["THP_MEM_ALLOC_ENABLE"] == "1"
    assert in_effect == {"THP_MEM_ALLOC_ENABLE": "1", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}


def test_a_job_process_started_with_the_settings_computes_the_same_bits():
    """The settings move memory, not arithmetic: a forward and backward in a process started with them gives the
    same bits as one started without them (and glibc accepts the tunables: the process starts and runs)."""
    code = (
        "import torch, hashlib\n"
        "torch.manual_seed(0)\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),"
        " torch.nn.Linear(16 * 62 * 62, 4))\n"
        "x = torch.rand(32, 3, 64, 64, requires_grad=True)\n"
        "net(x).sum().backward()\n"
        "print(hashlib.sha256(x.grad.numpy().tobytes()).hexdigest())\n"
    )
    base = {name: value for name, value in os.environ.items() if name not in JOB_ALLOCATOR_ENV}
    digests = [
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
        for env in (base, {**base, **JOB_ALLOCATOR_ENV})
    ]
    assert digests[0] and digests[0] == digests[1]
