"""Config validation: every preset is valid; bad keys and values are one-line errors naming the key."""

import copy

import pytest
import yaml

from eea_repro.workflow.config import ConfigError, fill_defaults, load_config, redundant_keys, validate_config
from eea_repro.methods import METHODS
from eea_repro.workflow.names import EEA_METHODS

KNOWN = {name: method.families for name, method in METHODS.items()} | EEA_METHODS


@pytest.fixture()
def default(repo):
    return load_config(repo / "config.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "config/ci.yaml"])
def test_presets_are_valid(repo, name):
    validate_config(yaml.safe_load((repo / name).read_text()), KNOWN)


def test_paper_preset_is_valid_once_imagenet_is_given(repo, tmp_path):
    config = load_config(repo / "config/paper.yaml")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    (tmp_path / "labels.txt").write_text("ILSVRC2012_val_00000001.JPEG 0\n")
    config |= {"imagenet_dir": str(tmp_path / "val"), "imagenet_labels": str(tmp_path / "labels.txt")}
    validate_config(config, KNOWN)


def _error(config) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(config, KNOWN)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_it(default):
    default["explainer"]["lamda_size"] = 3
    message = _error(default)
    assert "'explainer'" in message and "lamda_size" in message and "lambda_size" in message


def test_wrong_type_names_key(default):
    default["finetune"]["steps"] = "many"
    assert "finetune.steps" in _error(default)


def test_unknown_family_and_variant(default):
    bad = copy.deepcopy(default)
    bad["models"]["vit"]["family"] = "transformer"
    assert "models.vit.family" in _error(bad)
    default["variants"] = ["target", "top1"]
    assert "variants.1" in _error(default)


def test_unknown_method_lists_known_ones(default):
    default["methods"]["vit"].append("gradcam_vit")
    message = _error(default)
    assert "gradcam_vit" in message and "gae" in message


def test_method_of_wrong_family(default):
    default["methods"]["cnn"].append("rollout")
    assert "does not support cnn" in _error(default)


def test_imagenet_needs_paths(repo, tmp_path):
    config = load_config(repo / "config/paper.yaml")
    assert "imagenet_dir" in _error(config)
    config["imagenet_dir"] = "/nonexistent/imagenet/val"
    assert "does not exist" in _error(config)
    (tmp_path / "val").mkdir()
    (tmp_path / "labels.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    config |= {"imagenet_dir": str(tmp_path / "val"), "imagenet_labels": str(tmp_path / "labels.txt")}
    assert _error(config) == f"config key 'imagenet_dir': {tmp_path / 'val'} is not a folder of images"


def test_local_checkpoint_file_must_exist(default):
    default["models"]["vit"]["checkpoint"] = {"source": "file", "path": "missing.safetensors"}
    assert "models.vit.checkpoint.path" in _error(default)


def test_every_schema_key_has_a_description():
    from eea_repro.workflow.config import schema_keys

    keys = schema_keys()
    assert len(keys) > 100 and [key for key, node in keys if not node.get("description")] == []


def test_the_config_reference_is_generated_from_the_schema(repo):
    """config/README.md is what `python -m eea_repro.workflow.config --write config/README.md` writes: regenerate it with the
    schema."""
    from eea_repro.workflow.config import reference_markdown, schema_keys

    reference = (repo / "config/README.md").read_text()
    assert reference == reference_markdown()
    assert all(f"| `{key}` |" in reference for key, _ in schema_keys())


@pytest.mark.parametrize("name", ["config.yaml", "config/ci.yaml", "config/paper.yaml", "config/real_photos.yaml"])
def test_a_shipped_config_names_only_what_differs_from_the_schemas_defaults(repo, name):
    assert redundant_keys(yaml.safe_load((repo / name).read_text())) == []


def test_the_defaults_fill_what_a_config_leaves_out_and_keep_what_it_sets():
    config = fill_defaults({"dataset": {"kind": "imagenet"}, "sanity": {"layers": {"vit": "block"}, "n_images": 9}})
    assert config["explainer"]["lambda_size"] == 50 and config["finetune"]["steps"] == 25  # the paper's protocol
    assert config["dataset"]["imagenet"]["eval_count"] == 43000 and config["replicates"] == 1
    assert config["sanity"]["layers"] == {"vit": "block", "cnn": "stage"} and config["sanity"]["n_images"] == 9
    assert "imagenet" not in fill_defaults({"dataset": {"kind": "embedded"}})["dataset"]  # only the kind's own block
    folder = fill_defaults({"dataset": {"kind": "folder", "folder": {"root": "photos"}}})["dataset"]["folder"]
    assert folder == {"root": "photos", "csv": None, "eval_count": None, "augment": None, "boxes": None}
