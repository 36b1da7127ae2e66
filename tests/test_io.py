"""Output files: written whole or not at all, with the permissions the user's umask gives a plain file."""

import os
import stat

import numpy as np
import pytest

from eea_repro.figures.grids import save_figure
from eea_repro.workflow.io import atomic_path, save_map_shard, write_json


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_are_group_readable_under_umask_022(tmp_path, umask_022):
    import matplotlib.pyplot as plt

    write_json(tmp_path / "summary.json", {"a": 1})
    save_map_shard(tmp_path / "maps.npz", np.zeros((1, 2, 2)), ["x"], [0], [0], "gradcam")
    figure = plt.figure()
    save_figure(figure, [tmp_path / "figure.png", tmp_path / "figure.pdf"])
    with atomic_path(tmp_path / "nested" / "table.csv") as tmp:
        tmp.write_text("a\n1\n")
    for name in ("summary.json", "maps.npz", "figure.png", "figure.pdf", "nested/table.csv"):
        assert _mode(tmp_path / name) == 0o644, name
    assert _mode(tmp_path / "nested") == 0o755


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
