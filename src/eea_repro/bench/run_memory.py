"""The resident memory of a whole workflow run, summed over its concurrent jobs.

A rule's ``benchmark:`` file gives each job's own peak; what a machine must hold is the sum over the jobs that run
at once, plus Snakemake itself. This runs a command (usually ``snakemake ...``), samples the resident set of its whole
process tree every ``interval`` seconds and reports the largest sum, which processes made it up, and the wall time:

    python -m eea_repro.bench.run_memory --out results/run_memory.tsv -- snakemake --cores 2 --configfile ...

The samples (seconds, summed MB, process count) go to ``--out``; a sampling interval can miss a peak shorter than
itself, so the figure is a lower bound within about one interval's growth.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class TreeMemory:
    """The peak of the summed resident memory of a process tree, and what held it."""

    peak_bytes: int = 0
    peak_at_s: float = 0.0
    peak_processes: list[tuple[int, str]] = field(default_factory=list)  # (bytes, command line) at the peak
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, bytes, processes)


def tree_resident(root: psutil.Process) -> list[tuple[int, str]]:
    """(resident bytes, short command line) of ``root`` and each of its descendants that is still alive."""
    held = []
    for process in [root, *root.children(recursive=True)]:
        try:
            held.append((process.memory_info().rss, " ".join(process.cmdline())[:160]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return held


def watch(command: list[str], interval: float = 0.5) -> tuple[int, float, TreeMemory]:
    """Run ``command`` and sample its process tree until it exits: (exit status, wall seconds, :class:`TreeMemory`)."""
    started = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    memory = TreeMemory()
    while child.poll() is None:
        held = tree_resident(root)
        total, now = sum(size for size, _ in held), time.perf_counter() - started
        memory.samples.append((now, total, len(held)))
        if total > memory.peak_bytes:
            memory.peak_bytes, memory.peak_at_s, memory.peak_processes = total, now, sorted(held, reverse=True)
        time.sleep(interval)
    return child.returncode, time.perf_counter() - started, memory


def report_lines(wall_s: float, memory: TreeMemory, top: int = 6) -> list[str]:
    lines = [f"wall time {wall_s:.0f} s; peak resident memory of the run {memory.peak_bytes / 1e9:.2f} GB "
             f"(summed over {len(memory.peak_processes)} processes, at {memory.peak_at_s:.0f} s)"]
    lines += [f"  {size / 1e9:6.2f} GB  {command}" for size, command in memory.peak_processes[:top]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="TSV of the samples (seconds, MB, processes)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to watch after --")
    status, wall_s, memory = watch(command, args.interval)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("seconds\tresident_mb\tprocesses\n" + "".join(
            f"{seconds:.1f}\t{size / 1e6:.0f}\t{count}\n" for seconds, size, count in memory.samples))
    print("\n".join(report_lines(wall_s, memory)))
    return status


if __name__ == "__main__":
    sys.exit(main())
