"""The allocator settings exported to jobs: set where absent, the user's own values kept, the same bits computed,
fewer pages faulted."""

import os
import subprocess
import sys

from eea_repro.workflow.allocator import JOB_ALLOCATOR_ENV, export_allocator_settings


def test_settings_are_exported_where_absent_and_kept_where_set():
    environ = {"PATH": "/bin"}
    assert export_allocator_settings(environ) == JOB_ALLOCATOR_ENV
    assert environ == {"PATH": "/bin", **JOB_ALLOCATOR_ENV}
    users = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert export_allocator_settings(users) == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert users == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}


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


def test_a_batch_reuses_the_previous_batchs_pages():
    """Batches of 256 images through a conv stem, as in a Score-CAM chunk (its first activation, 37.7 MB, is above the
    32 MiB that glibc's mmap threshold can be raised to): in a process started with the settings the typical batch
    faults no page in, once the heap has grown, where glibc's defaults map and zero every large block anew on every
    batch. The median over ten batches is compared, as the heap may still grow in a few of them."""
    code = (
        "import resource, torch\n"
        "torch.manual_seed(0)\n"
        "stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),"
        " torch.nn.MaxPool2d(3, 2, 1), torch.nn.Conv2d(16, 32, 3, padding=1)).eval()\n"
        "images = torch.rand(8, 3, 96, 96)\n"
        "faults = []\n"
        "for _ in range(15):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    with torch.no_grad(): stem(images.repeat(32, 1, 1, 1) * 0.5)\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
        "print(sorted(faults[5:])[5])\n"
    )
    base = {name: value for name, value in os.environ.items() if name not in JOB_ALLOCATOR_ENV}
    base["OMP_NUM_THREADS"] = "1"
    without, with_settings = (
        int(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout)
        for env in (base, {**base, **JOB_ALLOCATOR_ENV})
    )
    assert without > 37_748_736 // 4096  # at least the 37.7 MB activation's pages, in the median batch
    assert with_settings < without / 100
