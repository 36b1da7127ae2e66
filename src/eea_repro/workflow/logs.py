"""Per-rule logging: everything a job prints (including tqdm progress bars) goes to the rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from functools import partial
from pathlib import Path

from tqdm import tqdm

from eea_repro.workflow import numerics

GPU_LOCK_DIR = ".snakemake/gpu_locks"  # under the working directory: shared by all jobs of one run


@contextlib.contextmanager
def log_to(path: str | Path):
    """Send stdout and stderr to ``path`` for the duration of a job; a traceback on failure lands there too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as stream:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = stream
        print(f"--- started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        for line in numerics.header_lines():
            print(line)
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc()
            raise
        finally:
            print(f"--- ended {time.strftime('%Y-%m-%d %H:%M:%S')}")
            sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def job_context(job):
    """What every rule's script does first: log to the rule's ``log:`` file, use only the job's threads, and bind
    the job to its own free GPU(s) before anything touches CUDA (Snakemake only counts ``resources: gpu``).

    The thread count reaches torch through OpenMP's variable when the job imports torch later, so that table and
    figure jobs that never use it do not pay its import. A ``ValueError`` is how the package reports a bad input (a
    file, a line, a config key and what to do): it reaches the console as that one line, its traceback stays in the
    log for a bug report; any other error is a bug and keeps its traceback on the console too."""
    from eea_repro.workflow.gpu_slots import bound_gpus

    threads = max(1, int(job.threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        with log_to(job.log[0]):
            if "SLURM_JOB_ID" in os.environ:  # which cluster job ran this rule job: the key to sacct/scontrol records
                print(f"Slurm job {os.environ['SLURM_JOB_ID']} on {socket.gethostname()}")
            with bound_gpus(int(getattr(job.resources, "gpu", 0) or 0), GPU_LOCK_DIR):
                yield
            print(memory_line(getattr(job.resources, "mem_mb", None)))
    except ValueError as error:
        sys.exit(input_error_line(error, job.log[0]))


PEAK_MEMORY = "peak resident memory"


def peak_resident_mb() -> int:
    """The largest resident set this process has held, in MB: Linux's VmHWM, which starts afresh when the job's
    program starts (``ru_maxrss`` would also count the pages of the Snakemake process it was forked from)."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e6)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6)


def memory_line(declared_mb) -> str:
    """The log's last line: the job's peak next to the ``resources: mem_mb`` it declared, which a scheduler trusts."""
    if declared_mb is None:
        return f"{PEAK_MEMORY} {peak_resident_mb()} MB (no mem_mb declared)"
    peak = peak_resident_mb()
    verdict = "" if peak <= int(declared_mb) else " - ABOVE the declaration: please report it with this log"
    return f"{PEAK_MEMORY} {peak} MB of the {int(declared_mb)} MB declared (resources: mem_mb){verdict}"


def input_error_line(error: ValueError, log) -> str:
    """The one line a bad input shows on the console (the log keeps the traceback)."""
    return f"Input error: {' '.join(str(error).split())} (traceback in {log})"


def progress():
    """A tqdm factory for log files: a line at most every 10 s, no terminal control characters."""
    return partial(tqdm, mininterval=10.0, ascii=True, dynamic_ncols=False, ncols=100)
