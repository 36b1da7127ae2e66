"""Checkpoint files: the download code loads from a hub cache laid out like the real one, sha256 is checked,
pickles are never executed, and a checkpoint whose class count differs from the dataset's is refused."""

import hashlib
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from eea_repro.models import checkpoints
from eea_repro.models.network import ModelSpec, build_explained_model, create_network

TINY_VIT = ModelSpec("vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2})
TAG = "augreg_in21k_ft_in1k"


def _fake_hub_cache(root, spec: ModelSpec, tag: str) -> dict:
    """Write weights where huggingface_hub keeps a downloaded timm model: models--timm--<name>.<tag>/snapshots/<rev>/."""
    net = create_network(spec, num_classes=1000)
    repo_dir = root / "hub" / f"models--timm--{spec.timm_name}.{tag}"
    revision = hashlib.sha1(b"fake revision").hexdigest()
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": spec.timm_name, "num_classes": 1000}))
    return net.state_dict()


def _download_in_fresh_process(hf_home, destination) -> subprocess.CompletedProcess:
    """The hub client reads HF_HOME / HF_HUB_OFFLINE at import, so run the download as the rule does: a new process."""
    code = (
        "import sys; from eea_repro.models.network import ModelSpec, download_pretrained; "
        f"download_pretrained({TINY_VIT!r}, {TAG!r}, 1000, sys.argv[1])"
    )
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code, str(destination)], env=env, capture_output=True, text=True)


def test_download_uses_the_hub_cache_offline(tmp_path):
    original = _fake_hub_cache(tmp_path, TINY_VIT, TAG)
    destination = tmp_path / "vit.safetensors"
    result = _download_in_fresh_process(tmp_path, destination)
    assert result.returncode == 0, result.stderr
    loaded = checkpoints.load_state_dict(destination)
    assert torch.equal(loaded["blocks.0.attn.qkv.weight"], original["blocks.0.attn.qkv.weight"])
    model = build_explained_model(TINY_VIT, 1000, destination)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1000)


def test_download_offline_without_cache_is_one_line_naming_the_key(tmp_path):
    result = _download_in_fresh_process(tmp_path, tmp_path / "x.safetensors")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("RuntimeError:") and "checkpoint.path" in last_line
    assert not (tmp_path / "x.safetensors").exists()


def test_local_file_sha256_is_checked(tmp_path):
    net = create_network(TINY_VIT, num_classes=10)
    source = tmp_path / "weights.pth"
    torch.save(net.state_dict(), source)
    good = checkpoints.sha256_of(source)
    checkpoints.import_local_checkpoint(source, tmp_path / "ok.safetensors", good)
    assert torch.equal(checkpoints.load_state_dict(tmp_path / "ok.safetensors")["head.weight"], net.head.weight)
    with pytest.raises(ValueError, match="sha256"):
        checkpoints.import_local_checkpoint(source, tmp_path / "bad.safetensors", "0" * 64)
    assert not (tmp_path / "bad.safetensors").exists()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": _Exploit()}))
    with pytest.raises(ValueError, match="refused"):
        checkpoints.load_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_class_count_mismatch_is_refused(tmp_path):
    net = create_network(TINY_VIT, num_classes=5)
    path = tmp_path / "five.safetensors"
    checkpoints.save_state_dict(net.state_dict(), path)
    with pytest.raises(ValueError, match="5 classes but the dataset has 8"):
        build_explained_model(TINY_VIT, 8, path)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(AttributeError):
        checkpoints.save_state_dict({"w": "not a tensor"}, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
