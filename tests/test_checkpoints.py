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
    assert last_line.startswith("ValueError:") and "checkpoint.path" in last_line
    assert not (tmp_path / "x.safetensors").exists()


def test_only_a_download_that_a_later_try_can_fix_is_tried_again(monkeypatch, tmp_path):
    from huggingface_hub import constants
    from types import SimpleNamespace

    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from eea_repro.models import network

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    failures = [ConnectionError("reset by peer"), LocalEntryNotFoundError("cannot reach the Hub")]
    calls = []

    def flaky(spec, num_classes, pretrained=False):
        calls.append(spec.timm_name)
        if failures:
            raise failures.pop(0)
        return create_network(TINY_VIT, num_classes)

    monkeypatch.setattr(network, "create_network", flaky)
    network.download_pretrained(TINY_VIT, TAG, 10, tmp_path / "w.safetensors", retry_waits_s=(0, 0))
    assert calls == [f"{TINY_VIT.timm_name}.{TAG}"] * 3 and (tmp_path / "w.safetensors").exists()

    def unknown(spec, num_classes, pretrained=False):
        calls.append(spec.timm_name)
        raise RuntimeError(f"No pretrained weights exist for {spec.timm_name}")

    calls.clear()
    monkeypatch.setattr(network, "create_network", unknown)
    with pytest.raises(ValueError, match="could not download pretrained weights"):
        network.download_pretrained(TINY_VIT, TAG, 10, tmp_path / "x.safetensors", retry_waits_s=(0, 0))
    assert len(calls) == 1  # tried once: a retry cannot make an unknown tag exist
    def response(status):  # what the hub's errors read of an HTTP response
        return SimpleNamespace(status_code=status, headers={}, request=None)

    assert not network.worth_retrying(RepositoryNotFoundError("not found", response=response(401)))
    assert network.worth_retrying(HfHubHTTPError("busy", response=response(503)))
    assert network.worth_retrying(RuntimeError("timm wraps it")) is False
    wrapped = RuntimeError("timm wraps it")
    wrapped.__cause__ = TimeoutError("read timed out")
    assert network.worth_retrying(wrapped)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not network.worth_retrying(ConnectionError("offline on purpose"))


def test_the_checkpoint_rule_does_not_retry_what_cannot_change(repo):
    """A sha256 mismatch or weights that do not fit fail the same way every time: the rule has no `retries:`."""
    rule = (repo / "rules" / "checkpoints.smk").read_text().split("rule fetch_checkpoint:")[1].split("\nrule ")[0]
    assert "localrule" in rule and not [line for line in rule.splitlines() if line.strip().startswith("retries:")]


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


def test_a_safetensors_file_that_does_not_fit_names_the_users_file_and_the_key_map(tmp_path):
    from eea_repro.models.network import reference_state

    net = create_network(TINY_VIT, num_classes=10)
    source = tmp_path / "mine.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(source))
    with pytest.raises(ValueError) as refused:
        checkpoints.import_local_checkpoint(source, tmp_path / "copy.safetensors", None, reference_state(TINY_VIT, 10))
    assert str(refused.value).startswith(f"{source}: does not fit the model") and "checkpoint.key_map" in str(refused.value)
    assert not (tmp_path / "copy.safetensors").exists()
    fitting = tmp_path / "fits.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(fitting))
    checkpoints.import_local_checkpoint(fitting, tmp_path / "copy.safetensors", None, reference_state(TINY_VIT, 10))
    assert (tmp_path / "copy.safetensors").read_bytes() == fitting.read_bytes()  # copied as it is
