"""The checkpoints stage: train the embedded model, or import / download a user's weights."""

from __future__ import annotations

from pathlib import Path

from eea_repro.data.loading import load_tensors, open_split
from eea_repro.models import checkpoints
from eea_repro.models.network import ModelSpec, download_pretrained, load_model, reference_state, resolve_device
from eea_repro.workflow import numerics
from eea_repro.workflow.io import read_classes
from eea_repro.workflow.logs import progress
from eea_repro.workflow.numerics import seed_everything
from eea_repro.workflow.paths import resolve


def train_explained_model(model_cfg, image_root, train_file, val_file, test_file, classes_file, out_checkpoint,
                          out_record, *, resume, seed, device) -> None:
    from eea_repro.models.training import accuracy, train_classifier

    seed_everything(seed)
    device = resolve_device(device)
    spec = ModelSpec.from_config(model_cfg)
    train = load_tensors(open_split(image_root, train_file, model_cfg, classes_file), desc="train images")[:2]
    val = load_tensors(open_split(image_root, val_file, model_cfg, classes_file), desc="val images")[:2]
    settings = model_cfg["train"]
    state, history = train_classifier(
        spec, len(read_classes(classes_file)), train, val,
        epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
        weight_decay=settings["weight_decay"], seed=seed, device=device, resume_path=resume, progress=progress(),
    )
    checkpoints.save_state_dict(state, out_checkpoint)
    model = load_model(model_cfg, out_checkpoint, classes_file, device)
    test = load_tensors(open_split(image_root, test_file, model_cfg, classes_file), desc="test images")[:2]
    scores = {"val_accuracy": accuracy(model, *val), "test_accuracy": accuracy(model, *test)}
    checkpoints.write_checkpoint_record(out_record, out_checkpoint, "trained on the embedded train split",
                                        timm_name=spec.timm_name, history=history, numerics=numerics.run_mode(),
                                        machine=numerics.machine_record(device), **scores)
    Path(resume).unlink(missing_ok=True)
    print(f"saved {out_checkpoint} (val accuracy {scores['val_accuracy']:.3f}, test accuracy {scores['test_accuracy']:.3f})")


def fetch_checkpoint(model_cfg, classes_file, out_checkpoint, out_record) -> None:
    source = model_cfg["checkpoint"]
    n_classes = len(read_classes(classes_file))
    spec = ModelSpec.from_config(model_cfg)
    if source["source"] == "file":
        path = resolve(source["path"])
        checkpoints.import_local_checkpoint(path, out_checkpoint, source.get("sha256"),
                                            reference_state(spec, n_classes), source.get("key_map"))
        origin = f"local file {path.name}" + (f", key_map {source['key_map']}" if source.get("key_map") else "")
    else:
        download_pretrained(spec, source["pretrained_tag"], n_classes, out_checkpoint)
        if source.get("sha256") and checkpoints.sha256_of(out_checkpoint) != source["sha256"].lower():
            Path(out_checkpoint).unlink()
            raise ValueError(f"{out_checkpoint}: sha256 differs from models.*.checkpoint.sha256 {source['sha256']}")
        origin = f"timm {model_cfg['timm_name']}.{source['pretrained_tag']}"
    try:
        load_model(model_cfg, out_checkpoint, classes_file, "cpu")
    except Exception:
        Path(out_checkpoint).unlink(missing_ok=True)
        raise
    checkpoints.write_checkpoint_record(out_record, out_checkpoint, origin, timm_name=model_cfg["timm_name"],
                                        numerics=numerics.run_mode(), machine=numerics.machine_record("cpu"))
    print(f"saved {out_checkpoint} from {origin}")
