"""Memory-allocator settings for the workflow's job processes.

A job allocates and frees activation tensors of several MB on every batch. By default glibc serves those with
``mmap`` and unmaps them on free, so the next batch faults the same memory in again, 4 KiB at a time: on the embedded
default a third of a sanity job's CPU time was the kernel zeroing those pages. ``GLIBC_TUNABLES`` makes glibc serve
every block from its heap, never from a fresh ``mmap``, and keep the heap instead of trimming it back to the kernel, so
a batch reuses the previous batch's pages. This moves memory, not arithmetic: not a single computed bit changes.

Raising glibc's mmap threshold instead is not enough, as glibc caps it at 32 MiB: a Score-CAM chunk's first activation
(37.7 MB on the embedded ResNet) was still mapped and zeroed anew on every chunk. Transparent huge pages, which made
those faults cheaper, are not needed once nothing is faulted in again (side by side on single jobs, heap-only without
huge pages was as fast or faster, within the jobs' spread, at about the same peak memory).

The variable must be in a process's environment when it starts, so the Snakefile exports it for the jobs it launches
(locally and, as Slurm passes the submitting environment on, on a cluster). A value the user has set is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

TRIM_THRESHOLD = 4 * 2**30  # freed heap memory kept before any is returned to the kernel
TOP_PAD = 256 * 2**20  # extra address space requested per heap growth (not touched until used)

JOB_ALLOCATOR_ENV = {
    "GLIBC_TUNABLES": (f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
                       f":glibc.malloc.top_pad={TOP_PAD}"),
}


def export_allocator_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set ``JOB_ALLOCATOR_ENV`` in ``environ`` where the user has not set the variable; returns what is in effect."""
    for name, value in JOB_ALLOCATOR_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in JOB_ALLOCATOR_ENV}
