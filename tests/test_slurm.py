"""The Slurm profile on a real single-node Slurm cluster (see slurm_cluster.py), run as the README says.

The tiny CI config's tables of its first model are built with ``--workflow-profile`` pointing at a copy of
``profiles/slurm`` whose partition placeholder is filled in, exactly the edit the README asks of a user. Then: every
rule job ran inside a Slurm job, the tables equal those of the local run, jobs of GPU rules asked for ``--gpus`` and
got a GPU, the other jobs asked for none.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from eea_repro.workflow.config import load_config
from eea_repro.workflow.logs import job_context
from slurm_cluster import PARTITION, missing_requirements, single_node_cluster
from workflow_helpers import job_counts, snakemake

# Rules that run a model and so must ask for GPUs (config/ci.yaml has device auto: each asks for gpus_per_job).
MODEL_RULES = {"train_explained_model", "pretrain_explainer", "baseline_maps_vit", "eea_maps", "evaluate_maps"}
PARTITION_PLACEHOLDER = '# slurm_partition: "<partition>"'


def test_job_context_logs_the_slurm_job_id(tmp_path, monkeypatch):
    job = SimpleNamespace(threads=1, log=[str(tmp_path / "job.log")], resources=SimpleNamespace(gpu=0))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with job_context(job):
        pass
    monkeypatch.delenv("SLURM_JOB_ID")
    with job_context(job):
        pass
    lines = re.findall(r"^Slurm job .*$", (tmp_path / "job.log").read_text(), re.MULTILINE)
    assert lines == [f"Slurm job 4242 on {socket.gethostname()}"]  # the second job ran outside Slurm: no line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_requirements()
    if reason:
        pytest.skip(f"no test Slurm cluster: {reason}")
    with single_node_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def site_profile(repo: Path, folder: Path) -> Path:
    """The README's step: a copy of profiles/slurm with the partition placeholder set."""
    text = (repo / "profiles/slurm/profile.yaml").read_text()
    assert text.count(PARTITION_PLACEHOLDER) == 1
    folder.mkdir()
    (folder / "profile.yaml").write_text(text.replace(PARTITION_PLACEHOLDER, f'slurm_partition: "{PARTITION}"'))
    return folder


@pytest.fixture(scope="module")
def slurm_run(repo, cluster, tmp_path_factory):
    """The CI config through the Slurm profile; returns the workdir and Snakemake's output."""
    base = tmp_path_factory.mktemp("slurm_run")
    profile = site_profile(repo, base / "profile")
    workdir = base / "work"
    config = load_config(repo / "config/ci.yaml")
    model = next(iter(config["models"]))  # one model's tables run every kind of model job; the second only adds time
    tables = [f"results/tables/{model}_{variant}.csv" for variant in config["variants"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        result = snakemake(
            repo, workdir, "--configfile", str(repo / "config/ci.yaml"), "--workflow-profile", str(profile),
            # no accounting database: job states come from squeue (slurmctld keeps finished jobs for MinJobAge)
            "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "1",  # the plugin waits 40 s before its first poll
            *tables,  # the tables and what they need: every kind of job, without the figures and report stages
        )
    return SimpleNamespace(workdir=workdir, tables=tables, output=result.stdout + result.stderr)


def submitted_jobs(output: str) -> set[str]:
    """Slurm job ids, from the executor's 'has been submitted' lines (a group job's own id is not a number)."""
    return set(re.findall(r"^Job \S+ has been submitted with SLURM jobid (\d+)", output, re.MULTILINE))


def printed_jobs(output: str) -> list[SimpleNamespace]:
    """The rule jobs Snakemake printed: rule, local or not, log files, `gpu` resource.

    A block is 'rule <name>:' ('localrule <name>:' for a job run by Snakemake itself) and its indented lines; the
    members of a group job are printed the same way, indented one level more.
    """
    jobs = []
    for indent, kind, rule, block in re.findall(r"^( *)(localrule|rule) (\w+):\n((?:\1    .*\n)*)", output, re.MULTILINE):
        logs = re.search(r"^ *log: (.*)$", block, re.MULTILINE)
        gpus = re.search(r"^ *resources: .*\bgpu=(\d+)", block, re.MULTILINE)
        jobs.append(SimpleNamespace(rule=rule, local=kind == "localrule", logs=logs.group(1).split(", ") if logs else [],
                                    gpus=int(gpus.group(1)) if gpus else 0))
    return jobs


def rules_in(comment: str, rules: set[str]) -> set[str]:
    """The rules one Slurm job ran. The plugin comments a job 'rule_<rule>[_wildcards_<values>]' and a group job
    'rule_<group>_<its rules, sorted, joined by _>'."""
    names = comment.split("_wildcards_")[0]
    return {rule for rule in rules if rule in names}


@pytest.mark.workflow
def test_every_job_ran_as_a_slurm_job(slurm_run):
    counts = job_counts(slurm_run.output)
    remote = [job for job in printed_jobs(slurm_run.output) if not job.local]
    local = [job for job in printed_jobs(slurm_run.output) if job.local]
    assert len(remote) + len(local) == counts["total"] and not local
    ran_in = set()
    for job in remote:
        assert len(job.logs) == 1, job
        ids = re.findall(r"^Slurm job (\d+) on ", (slurm_run.workdir / job.logs[0]).read_text(), re.MULTILINE)
        assert len(ids) == 1, f"{job.logs[0]}: {ids}"
        ran_in.add(ids[0])
    assert ran_in == submitted_jobs(slurm_run.output)


@pytest.mark.workflow
def test_tables_equal_the_local_run(slurm_run, tiny_run):
    tables = sorted(path.relative_to(slurm_run.workdir) for path in (slurm_run.workdir / "results/tables").glob("*.csv"))
    assert {str(table) for table in tables} >= set(slurm_run.tables)  # and their per-image companions
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_csv(slurm_run.workdir / table), pd.read_csv(tiny_run / table),
                                      check_exact=True, obj=str(table))


@pytest.mark.workflow
def test_gpu_jobs_asked_for_gpus_and_cpu_jobs_for_none(repo, cluster, slurm_run):
    gpus_per_job = load_config(repo / "config/ci.yaml")["gpus_per_job"]
    remote = [job for job in printed_jobs(slurm_run.output) if not job.local]
    rules = {job.rule for job in remote}
    gpu_rules = {job.rule for job in remote if job.gpus}
    assert {job.gpus for job in remote} == {0, gpus_per_job}
    assert MODEL_RULES <= gpu_rules
    seen = set()
    for slurm_id in submitted_jobs(slurm_run.output):
        job = cluster.job_fields(slurm_id)
        ran = rules_in(job["Comment"], rules)
        assert ran and job["JobState"] == "COMPLETED", (job["Comment"], job["JobState"])
        seen |= ran
        if ran & gpu_rules:
            assert ran <= gpu_rules, ran  # a group that mixed in a CPU rule would hold a GPU for it
            # sbatch --gpus=N is recorded per job (--gres would be per node); JOB_GRES is what the node gave it
            assert job.get("TresPerJob") == f"gres:gpu:{gpus_per_job}", (ran, job.get("TresPerJob"))
            assert job.get("JOB_GRES") == f"gpu:{gpus_per_job}", (ran, job.get("JOB_GRES"))
        else:
            assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", "") + job.get("JOB_GRES", ""), ran
    assert seen == rules
