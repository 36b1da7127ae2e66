"""A throw-away single-node Slurm cluster on this host, for the cluster-profile test.

It runs its own munged, slurmctld and slurmd (as root, in the foreground, with their own key, socket, ports, spool
and state directories under a temporary folder), so it touches neither a system Slurm nor a system munge. Clients
reach it through ``SLURM_CONF``, which ``environment()`` returns. The node has two GPUs as a GRES backed by no GPU at
all, enough for Slurm to schedule ``--gpus`` requests on a machine that has none. There is no accounting database:
finished jobs stay visible to ``squeue``/``scontrol`` for ``MIN_JOB_AGE_S``.

One thing goes outside the temporary folder: the executor plugin's job step removes every ``SLURM_*`` variable,
``SLURM_CONF`` included, before its nested ``srun``, so inside a job the clients find the configuration where they
look on a configless node, ``/run/slurm/conf``. That path is linked to the temporary folder for the cluster's
lifetime (and the cluster refuses to start where a system Slurm configuration exists).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARTITION = "eeatest"
NODE_GPUS = 2
MIN_JOB_AGE_S = 3600  # long enough that every job of the run is still known to slurmctld when the test reads it
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
NODE_CONF_DIR = Path("/run/slurm/conf")  # where clients on a configless node read slurm.conf


def missing_requirements() -> str | None:
    """Why this host cannot run the cluster (None if it can)."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if missing:
        return f"Slurm/munge not installed (missing {', '.join(missing)}; Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if SYSTEM_CONF.exists():
        return f"this host has a Slurm configuration ({SYSTEM_CONF}): jobs would talk to that cluster, not the test's"
    if NODE_CONF_DIR.exists():  # a dangling link left by a killed test run does not count: exists() is False
        return f"{NODE_CONF_DIR} exists: another Slurm node configuration is in use on this host"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_name() -> str:
    """The name slurmd registers under: the short host name."""
    return socket.gethostname().split(".")[0]


def slurm_conf(root: Path, node: str, cpus: int, memory_mb: int) -> str:
    munge_socket = root / "munge" / "munge.socket"
    return f"""\
ClusterName=eeatest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# no cgroups in a container: track job processes by their parent ids, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
MailProg=/bin/true
# the node's declared memory and GPU count are bookkeeping for the scheduler, not what the host has
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{NODE_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(root: Path, node: str) -> str:
    """Two GPUs whose device files are links to /dev/null.

    slurmd (22.05) drops a GPU GRES that has no ``File=`` ("Removing file-less GPU") and rejects a file that is not a
    device, so each counted GPU points at the null character device: nothing to detect, nothing to open.
    """
    for index in range(NODE_GPUS):
        device = root / f"fake-gpu{index}"
        device.unlink(missing_ok=True)
        device.symlink_to("/dev/null")
    return f"AutoDetect=off\nNodeName={node} Name=gpu File={root}/fake-gpu[0-{NODE_GPUS - 1}]\n"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path

    def environment(self) -> dict[str, str]:
        """The environment for Slurm clients (and Snakemake) that talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str) -> str:
        return subprocess.run(command, env=self.environment(), capture_output=True, text=True, check=True).stdout

    def job_fields(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (space-separated ``Key=Value`` pairs)."""
        text = self.run("scontrol", "show", "job", "--details", "--oneliner", job_id)
        return dict(field.split("=", 1) for field in text.split() if "=" in field)


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def _wait_for(check, what: str, timeout_s: float, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.returncode}; see {logs}")
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached after {timeout_s:g} s; see {logs}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def single_node_cluster(root: Path, cpus: int = 4, memory_mb: int = 64000) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under ``root``; yield once the node is idle; stop exactly those three.

    ``cpus`` and ``memory_mb`` are what the node declares to the scheduler (memory is not enforced): enough for the
    profile's requests and for two 2-thread jobs at once, whose time goes mostly into starting Python.
    Jobs still in the queue at the end are cancelled first, so no job step outlives its daemons.
    """
    root = Path(root)
    for folder in ("munge", "state", "spool", "log"):
        (root / folder).mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / "munge").chmod(0o711)  # munged wants its socket reachable by every client
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = _node_name()
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, node, cpus, memory_mb))
    (root / "gres.conf").write_text(gres_conf(root, node))  # read from the folder of slurm.conf
    cluster = SlurmCluster(root, conf)
    env = cluster.environment()
    logs = root / "log"
    started: list[subprocess.Popen] = []
    if NODE_CONF_DIR.is_symlink():
        NODE_CONF_DIR.unlink()  # dangling, from a run that could not clean up
    NODE_CONF_DIR.parent.mkdir(parents=True, exist_ok=True)
    NODE_CONF_DIR.symlink_to(root, target_is_directory=True)
    try:
        started.append(_start(
            ["munged", "--foreground", "--force", f"--socket={root}/munge/munge.socket", f"--key-file={key}",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={logs}/munged.log",
             f"--seed-file={root}/munge/munged.seed"],
            logs / "munged.out", env,
        ))
        _wait_for(lambda: (root / "munge" / "munge.socket").exists(), "munged socket", 30, started, logs)
        started.append(_start(["slurmctld", "-D", "-i", "-f", str(conf)], logs / "slurmctld.out", env))
        started.append(_start(["slurmd", "-D", "-f", str(conf), "-N", node], logs / "slurmd.out", env))

        def node_idle() -> bool:
            result = subprocess.run(["sinfo", "--noheader", "--format=%t", "--nodes", node],
                                    env=env, capture_output=True, text=True)
            return result.returncode == 0 and result.stdout.strip() == "idle"

        _wait_for(node_idle, f"node {node} idle in sinfo", 90, started, logs)
        yield cluster
    finally:
        if len(started) == len(DAEMONS):
            subprocess.run(["scancel", "--full", f"--partition={PARTITION}"], env=env, capture_output=True)
            with contextlib.suppress(Exception):
                _wait_for(lambda: not cluster.run("squeue", "--noheader", "--states=RUNNING,PENDING,COMPLETING"),
                          "empty queue", 30, [], logs)
        for process in reversed(started):
            _stop(process)
        NODE_CONF_DIR.unlink()
