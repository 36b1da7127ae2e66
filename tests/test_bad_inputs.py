"""Bad input: unreadable images and bad label lines are refused (one line naming file and line) or skipped and listed,
odd colour modes are converted, and a map method that crashes on a shard fails the job naming the shard's images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from eea_repro.models import checkpoints
from eea_repro.workflow.config import load_config
from eea_repro.data.files import read_label_file
from eea_repro.data.loading import LabeledImageFolder
from eea_repro.data.splits import make_imagenet_split_lists
from eea_repro.workflow.logs import log_to
from eea_repro.methods import METHODS
from eea_repro.methods.registry import Method
from eea_repro.models.network import ModelSpec, create_network
from eea_repro.report.page import build_report
from eea_repro.explainer.stage import make_eea_maps
from eea_repro.methods.stage import make_baseline_maps

N_CLASSES = 10


def _name(index: int) -> str:
    return f"ILSVRC2012_val_{index:08d}.JPEG"


def _good_image(path: Path, index: int) -> None:
    noise = np.random.default_rng(index).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG", quality=90)


def _folder(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """``count`` readable JPEGs and their label lines (label = index mod N_CLASSES)."""
    folder = tmp_path / "val"
    folder.mkdir()
    for index in range(1, count + 1):
        _good_image(folder / _name(index), index)
    return folder, [f"{_name(index)} {index % N_CLASSES}" for index in range(1, count + 1)]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _spoil(kind: str, folder: Path, lines: list[str], index: int) -> str:
    """Make input ``index`` (1-based line number) bad in one way; returns a phrase its error must contain."""
    path = folder / _name(index)
    if kind == "truncated":
        _truncate(path)
        return "truncated"
    if kind == "not_an_image":
        path.write_text("<html>not found</html>")
        return "not an image"
    if kind == "missing_file":
        path.unlink()
        return "file not found"
    if kind == "no_label":
        lines[index - 1] = _name(index)
        return "no label"
    if kind == "label_out_of_range":
        lines[index - 1] = f"{_name(index)} {N_CLASSES}"
        return f"label {N_CLASSES} is outside [0, {N_CLASSES})"
    raise AssertionError(kind)


def _draw(tmp_path, folder, lines, counts, **options):
    labels = tmp_path / "val_labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "splits"
    out.mkdir(exist_ok=True)
    make_imagenet_split_lists(labels, folder, out, {"n_classes": N_CLASSES, **counts}, 0, out / "classes.txt",
                              out / "skipped.csv", out / "skipped.json", **options)
    return labels, out


ALL_OF_12 = {"eval_count": 8, "explainer_train_count": 2, "explainer_val_count": 2}


@pytest.mark.parametrize("kind", ["truncated", "not_an_image", "missing_file", "no_label", "label_out_of_range"])
def test_a_bad_input_is_one_line_naming_file_and_line(tmp_path, kind):
    folder, lines = _folder(tmp_path, 12)
    phrase = _spoil(kind, folder, lines, 7)
    with pytest.raises(ValueError) as error:
        _draw(tmp_path, folder, lines, ALL_OF_12)
    message = str(error.value)
    assert "\n" not in message
    assert str(folder / _name(7)) in message and f"line 7 of {tmp_path / 'val_labels.txt'}" in message
    assert phrase in message.lower() and "on_bad_image: skip" in message
    assert not (tmp_path / "splits" / "test.txt").exists()


def test_an_image_without_a_label_line_is_an_error(tmp_path):
    folder, lines = _folder(tmp_path, 12)
    _good_image(folder / "stray.png", 99)
    (folder / "notes.txt").write_text("not an image, not a problem")
    with pytest.raises(ValueError, match="stray.png .not listed in .*: image has no label line"):
        _draw(tmp_path, folder, lines, ALL_OF_12)


def test_skip_leaves_bad_inputs_out_and_lists_every_one(tmp_path):
    """Six bad inputs of 17 files; the counts ask for exactly the 11 good ones, so every image is decoded."""
    folder, lines = _folder(tmp_path, 16)
    spoiled = {3: "truncated", 5: "not_an_image", 8: "missing_file", 11: "no_label", 14: "label_out_of_range"}
    phrases = {_name(index): _spoil(kind, folder, lines, index) for index, kind in spoiled.items()}
    _good_image(folder / "stray.JPEG", 99)
    phrases["stray.JPEG"] = "no label line"
    _, out = _draw(tmp_path, folder, lines, {"eval_count": 7, "explainer_train_count": 2, "explainer_val_count": 2},
                   on_bad_image="skip", threads=2)
    drawn = [name for split in ("test", "explainer_train", "explainer_val")
             for name, _ in read_label_file(out / f"{split}.txt")]
    good = [_name(index) for index in range(1, 17) if index not in spoiled]
    assert sorted(drawn) == sorted(good)  # every good image used once, no bad one
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["file"]) == sorted(phrases)
    for row in skipped.itertuples():
        assert phrases[row.file] in row.reason.lower()
        expected_line = next((i for i in spoiled if _name(i) == row.file), None)
        assert (pd.isna(row.line) if expected_line is None else row.line == expected_line)
    summary = json.loads((out / "skipped.json").read_text())
    assert summary["count"] == len(phrases) == 6 and summary["on_bad_image"] == "skip"


def test_skip_draws_past_an_unreadable_image_and_fails_when_too_few_remain(tmp_path):
    folder, lines = _folder(tmp_path, 12)
    _truncate(folder / _name(4))
    _, out = _draw(tmp_path, folder, lines, {"eval_count": 6, "explainer_train_count": 3, "explainer_val_count": 2},
                   on_bad_image="skip")
    assert len(read_label_file(out / "test.txt")) == 6
    with pytest.raises(ValueError, match="11 readable images, but dataset.imagenet asks for 12"):
        _draw(tmp_path, folder, lines, ALL_OF_12, on_bad_image="skip")


def test_grayscale_palette_and_alpha_images_pass_the_checks_and_load_as_rgb(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    palette = Image.new("P", (9, 9), 1)
    palette.putpalette([0, 0, 0, 200, 40, 10] + [0] * 762)
    images = {
        "gray.JPEG": (Image.new("L", (9, 7), 90), (90, 90, 90)),
        "gray_alpha.png": (Image.new("LA", (9, 9), (120, 255)), (120, 120, 120)),
        "palette.png": (palette, (200, 40, 10)),
        "rgba.png": (Image.new("RGBA", (8, 8), (10, 200, 30, 255)), (10, 200, 30)),
    }
    for name, (image, _) in images.items():
        image.save(folder / name)
    lines = [f"{name} {i}" for i, name in enumerate(images)]
    _, out = _draw(tmp_path, folder, lines, {"eval_count": 4, "explainer_train_count": 0, "explainer_val_count": 0},
                   disjoint=False)
    dataset = LabeledImageFolder(folder, out / "test.txt", size=4)
    for index, name in enumerate(dataset.file_names):
        pixels = dataset[index]["image"]
        assert pixels.shape == (3, 4, 4)
        expected = torch.tensor(images[name][1], dtype=torch.float32).view(3, 1, 1) / 255
        assert torch.allclose(pixels, expected.expand(3, 4, 4), atol=2 / 255), name


def test_report_counts_and_lists_skipped_images(repo, tmp_path):
    summary = tmp_path / "skipped.json"
    first = [{"file": "<b>x</b>.JPEG", "line": 7, "reason": "image file is truncated"},
             {"file": "stray.JPEG", "line": None, "reason": "image has no label line"}]
    summary.write_text(json.dumps({"on_bad_image": "skip", "count": 23, "list": "results/data/skipped_images.csv",
                                   "first": first}))
    (tmp_path / "benchmarks").mkdir()
    config = load_config(repo / "config/paper.yaml")
    build_report(template=repo / "report/template.html.j2", style=repo / "report/style.css", config=config,
                 method_labels={}, controls=[], tables=[], figures=[], checkpoints=[], explainers=[],
                 benchmarks_dir=tmp_path / "benchmarks", output=tmp_path / "index.html",
                 sections={"skipped_images": str(summary)})
    html = (tmp_path / "index.html").read_text()
    paragraph = html[html.index('id="skipped-images"') :]
    assert "<strong>23</strong>" in paragraph and "… and 21 more." in paragraph
    assert "&lt;b&gt;x&lt;/b&gt;.JPEG" in paragraph and "<b>x</b>" not in html


# --- a map method that crashes ------------------------------------------------------------------------------------


@pytest.fixture
def tiny_shard(tmp_path):
    """Six labelled images, a classes file and a tiny ResNet checkpoint: what a map job reads."""
    folder, lines = _folder(tmp_path, 6)
    split = tmp_path / "test.txt"
    split.write_text("\n".join(lines) + "\n")
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"class {i}\n" for i in range(N_CLASSES)))
    model_cfg = {"family": "cnn", "timm_name": "resnet18", "input_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3,
                 "timm_kwargs": {"channels": [4, 8, 8, 8], "stem_width": 4}}
    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet.safetensors"
    checkpoints.save_state_dict(create_network(ModelSpec.from_config(model_cfg), N_CLASSES).state_dict(), checkpoint)
    return {"folder": folder, "split": split, "classes": classes, "model_cfg": model_cfg, "checkpoint": checkpoint}


def test_a_crashing_method_fails_its_shard_naming_the_images(tiny_shard, tmp_path, monkeypatch):
    def crash(model, images01, classes, generator):
        raise FloatingPointError("singular matrix\nin layer 3")

    monkeypatch.setitem(METHODS, "crashes", Method("crashes", "Crashes", ("cnn",), True, crash))
    log = tmp_path / "maps.log"
    out = tmp_path / "maps" / "target.npz"
    with pytest.raises(RuntimeError), log_to(log):
        make_baseline_maps(["crashes"], tiny_shard["model_cfg"], tiny_shard["checkpoint"], tiny_shard["folder"],
                           tiny_shard["split"], tiny_shard["classes"], {"crashes": {"target": out}},
                           shard_range=(2, 5), seed=0, device="cpu", precision="fp32", batch_size=2)
    shard_ids = [Path(_name(index)).stem for index in (3, 4, 5)]  # rows 2..4 of the split
    failure = [line for line in log.read_text().splitlines() if line.startswith("RuntimeError: ")]
    assert failure == [f"RuntimeError: map method 'crashes' failed on images 2..4 of the evaluated split "
                       f"({', '.join(shard_ids)}): FloatingPointError: singular matrix in layer 3"]
    assert "raise FloatingPointError" in log.read_text()  # the original traceback is kept
    assert not out.exists()


def test_a_crashing_eea_shard_names_its_images(tiny_shard, tmp_path, monkeypatch):
    import eea_repro.explainer.network as explainer

    def explain_fails(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(explainer, "explain", explain_fails)
    monkeypatch.setattr(explainer, "load_explainer", lambda *args, **kwargs: torch.nn.Identity())
    unused = tmp_path / "explainer.safetensors"  # read for its digest only: load_explainer is replaced
    unused.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"'peea' failed on images 0\.\.1 of the evaluated split "
                                           r"\(ILSVRC2012_val_00000001, ILSVRC2012_val_00000002\): RuntimeError: CUDA"):
        scoring = {"batch_size": 8, "tie_break": "random", "seed": 0}
        make_eea_maps(tiny_shard["model_cfg"], {}, {}, scoring, tiny_shard["checkpoint"], {"target": unused},
                      tiny_shard["folder"], tiny_shard["split"], tiny_shard["classes"],
                      {"peea": {"target": tmp_path / "m.npz"}}, shard_range=(0, 2), device="cpu")
