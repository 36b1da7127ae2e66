"""Memory-allocator settings for the workflow's job processes.

A job allocates and frees activation tensors of several MB on every batch. By default glibc serves those with
``mmap`` and unmaps them on free, so the next batch faults the same memory in again, 4 KiB at a time: on the embedded
default a third of a sanity job's CPU time was the kernel zeroing those pages. Two settings remove most of it without
changing a single computed bit (they move memory, not arithmetic):

- ``THP_MEM_ALLOC_ENABLE=1``: torch backs its large CPU tensors with transparent huge pages (2 MiB per fault);
- ``GLIBC_TUNABLES``: glibc keeps freed blocks up to 32 MiB in its heap and does not trim the heap back to the
  kernel, so a batch reuses the previous batch's pages.

Both must be in a process's environment when it starts, so the Snakefile exports them for the jobs it launches
(locally and, as Slurm passes the submitting environment on, on a cluster). A value the user has set is kept.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed mmap threshold on 64-bit systems
TRIM_THRESHOLD = 4 * 2**30  # freed heap memory kept before any is returned to the kernel
TOP_PAD = 256 * 2**20  # extra address space requested per heap growth (not touched until used)

JOB_ALLOCATOR_ENV = {
    "THP_MEM_ALLOC_ENABLE": "1",
    "GLIBC_TUNABLES": (f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
                       f":glibc.malloc.top_pad={TOP_PAD}"),
}


def export_allocator_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set ``JOB_ALLOCATOR_ENV`` in ``environ`` where the user has not set the variable; returns what is in effect."""
    for name, value in JOB_ALLOCATOR_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in JOB_ALLOCATOR_ENV}
