"""Shared fixtures: the repository root, and the CI config run once end to end for every test that reads a run."""

from pathlib import Path

import pytest
import torch

from workflow_helpers import snakemake

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_run(repo, tmp_path_factory) -> Path:
    """The CI config run once end to end; later tests read its outputs."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(repo, workdir, "--configfile", str(repo / "config/ci.yaml"))
    return workdir
