# Config validation (before any job runs) and the helpers that turn the config into file names.

import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from eea_repro.config import ConfigError, validate_config
from eea_repro.methods import METHODS
from eea_repro.plan import EEA_METHODS, export_package_path, plan_from_config

try:
    validate_config(config, {name: method.families for name, method in METHODS.items()} | EEA_METHODS)
except ConfigError as error:
    sys.exit(f"Config error: {error}")

PLAN = plan_from_config(config)

export_package_path(Path(workflow.basedir) / "src")
MODELS = list(config["models"])
TRAINED_MODELS = [m for m in MODELS if config["models"][m]["checkpoint"]["source"] == "train"]
FETCHED_MODELS = [m for m in MODELS if m not in TRAINED_MODELS]
BASELINES = sorted({m for names in config["methods"].values() for m in names} - set(EEA_METHODS))
VARIANTS = config["variants"]


wildcard_constraints:
    model="|".join(MODELS),
    variant="|".join(VARIANTS),
    shard=r"\d+",


def methods_of(model):
    return config["methods"][config["models"][model]["family"]]


def gpu_request(wildcards=None):
    """GPU-capable rules ask for GPUs only when they may use one."""
    return 0 if config["device"] == "cpu" else config["gpus_per_job"]


def shard_files(pattern, model, variant, method):
    return expand(pattern, model=model, variant=variant, method=method, shard=PLAN.shards)


def checkpoint_of(wildcards):
    return f"results/checkpoints/{wildcards.model}.safetensors"


def one_of(names):
    """A wildcard regex matching exactly these names (nothing when the list is empty)."""
    return "|".join(names) if names else "(?!)"


def table_inputs(wildcards):
    return {
        "per_image": [
            f
            for method in methods_of(wildcards.model)
            for f in shard_files(
                "results/metrics/{model}/{variant}/{method}/shard-{shard}.csv",
                wildcards.model,
                wildcards.variant,
                method,
            )
        ]
    }


def figure_inputs(wildcards):
    return {
        "maps": [
            f
            for method in methods_of(wildcards.model)
            for f in shard_files(
                "results/maps/{model}/{variant}/{method}/shard-{shard}.npz",
                wildcards.model,
                wildcards.variant,
                method,
            )
        ],
        "labels": PLAN.split_label_file("test"),
        "classes": PLAN.classes_file,
    }


def all_tables():
    return expand("results/tables/{model}_{variant}.csv", model=MODELS, variant=VARIANTS)


def all_figures():
    return expand("results/figures/qualitative_{model}_{variant}.png", model=MODELS, variant=VARIANTS)



def workflow_file(relative):
    """A file shipped with the workflow, found from the Snakefile so --directory elsewhere works."""
    return str(Path(workflow.basedir) / relative)


def image_root(wildcards):
    return PLAN.image_root


def model_settings(wildcards):
    return config["models"][wildcards.model]


def shard_range(wildcards):
    return PLAN.shard_range(wildcards.shard)


def caption(model, variant):
    return f"{config['models'][model]['label']}, '{variant}' variant"


def table_caption(wildcards):
    return caption(wildcards.model, wildcards.variant)


def report_tables():
    return [
        {
            "model": m,
            "variant": v,
            "html": f"results/tables/{m}_{v}.html",
            "caption": caption(m, v),
        }
        for m in MODELS
        for v in VARIANTS
    ]


def report_figures():
    return [
        {
            "model": m,
            "variant": v,
            "png": f"results/figures/qualitative_{m}_{v}.png",
            "caption": f"{caption(m, v)}: evaluated images (rows) and every method's map overlaid (columns); "
            "red = most relevant.",
        }
        for m in MODELS
        for v in VARIANTS
    ]


def report_sections():
    """Report sections fed by a stage's JSON summary: section name -> file (see report/sections/)."""
    return {}


def report_checkpoints():
    return [{"label": config["models"][m]["label"], "record": f"results/checkpoints/{m}.json"} for m in MODELS]


def report_explainers():
    return [
        {
            "label": config["models"][m]["label"],
            "variant": v,
            "history": f"results/explainers/{m}/{v}.json",
        }
        for m in MODELS
        for v in VARIANTS
    ]
