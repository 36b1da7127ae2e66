"""Shared fixtures: tiny timm models and a repository-root handle for the workflow tests."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
