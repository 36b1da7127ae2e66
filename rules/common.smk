# Config validation (before any job runs) and the helpers that turn the config into file names.

import glob
import sys
from pathlib import Path

sys.path.insert(0, str(WORKFLOW_ROOT / "src"))

from eea_repro.workflow.allocator import export_allocator_settings
from eea_repro.workflow.config import ConfigError, validate_config
from eea_repro.data.folder import AUGMENTED, IMAGES, LABELS as FOLDER_LABELS, MASKS as FOLDER_MASKS
from eea_repro.workflow.numerics import export_numerics_settings
from eea_repro.data.plan import export_package_path, plan_from_config
from eea_repro.workflow.names import EEA_LABELS, EEA_METHODS
from eea_repro.workflow.replicates import in_replicate, replicate_seed
from eea_repro.preflight.facts import WorkflowFacts
from eea_repro.preflight.job_memory import model_job_mb, similarity_job_mb, training_job_mb

# The method registry's entries and the model checks, kept in .snakemake/ between invocations (torch and timm are
# imported only when the package, their versions or the config's models / methods / sanity sections changed).
FACTS = WorkflowFacts(Path(".snakemake") / "eea_repro")
REGISTERED_METHODS = FACTS.methods()
try:
    validate_config(config, {name: entry["families"] for name, entry in REGISTERED_METHODS.items()} | EEA_METHODS)
    SANITY_LAYERS = FACTS.models(config)  # L per model and sanity layer granularity, from its architecture
    MODEL_MEMORY = FACTS.memory(config)  # weights and footprint per input of each model: the jobs' mem_mb
    PLAN = plan_from_config(config, FACTS.cache_dir)
except ConfigError as error:
    sys.exit(f"Config error: {error}")

FOLDER_AUGMENTED = f"{IMAGES}/{AUGMENTED}"

export_package_path(WORKFLOW_ROOT / "src")
export_allocator_settings()  # a heap that keeps and reuses freed memory: jobs fault far fewer pages
export_numerics_settings(config["numerics"])  # pinned CPU kernels (portable) before any job loads torch
MODELS = list(config["models"])
TRAINED_MODELS = [m for m in MODELS if config["models"][m]["checkpoint"]["source"] == "train"]
FETCHED_MODELS = [m for m in MODELS if m not in TRAINED_MODELS]
VARIANTS = config["variants"]
REFERENCE_VARIANT = "target" if "target" in VARIANTS else VARIANTS[0]  # the one variant of paper Figs. 9 and 10
ALL_VARIANTS = "+".join(VARIANTS)  # names the logs and benchmarks of jobs that serve every variant at once
# explainer.variants_together: one pretraining job per model for every variant, else one per variant ({variant})
EXPLAINER_JOB_VARIANTS = ALL_VARIANTS if config["explainer"]["variants_together"] else "{variant}"


def explainer_job_files(pattern):
    """A pretraining job's files of ``pattern`` (with {model} and {variant}): one per variant that the job trains."""
    if EXPLAINER_JOB_VARIANTS == "{variant}":
        return [pattern]
    return [pattern.replace("{variant}", variant) for variant in VARIANTS]


def explainer_job_variants(wildcards):
    return VARIANTS if EXPLAINER_JOB_VARIANTS != "{variant}" else [wildcards.variant]


# What tables, figures and summaries call each method (their jobs need not import the methods to know it).
METHOD_LABELS = {name: entry["label"] for name, entry in REGISTERED_METHODS.items()} | EEA_LABELS
# The control maps (noise, constant): never "best", no cost worth estimating.
CONTROL_METHODS = sorted(name for name, entry in REGISTERED_METHODS.items() if entry["control"])
# Methods whose maps depend on their place in a job's batches (drawn from the job's seed): never read from another job.
SEEDED_METHODS = {name for name, entry in REGISTERED_METHODS.items() if entry["seeded"]}
# Seed replicates (config `replicates`): replicate 0 is the run itself, with its own seed and files; replicates 1..N-1
# re-run every seeded stage (explainers and so EEA / pEEA maps, the seeded controls, the sanity re-fits) with a seed of
# their own, under results/replicate-<r>/. The explained models, data and randomized models stay one per config.
REPLICATES = list(range(1, config["replicates"]))
# The methods whose maps change with the training / sampling seed.
REPLICATED_METHODS = set(EEA_METHODS) | SEEDED_METHODS
# How POS scores are computed wherever EEA reads them (step selection, explainer validation), as in the metric jobs.
SCORING = {
    "batch_size": config["metrics"]["batch_size"],
    "tie_break": config["metrics"]["tie_break"],
    "seed": config["seed"],
}


wildcard_constraints:
    model="|".join(MODELS),
    variant="|".join(VARIANTS),
    shard=r"\d+",
    replicate=r"[1-9]\d*",


def methods_of(model):
    return config["methods"][config["models"][model]["family"]]


def replicated_methods_of(model):
    return [m for m in methods_of(model) if m in REPLICATED_METHODS]


def replicate_training_seed(wildcards):
    """The seed of a replicate job's training and seeded maps (the ``replicate`` wildcard)."""
    return replicate_seed(config["seed"], int(wildcards.replicate))


def gpu_request(wildcards=None):
    """GPU-capable rules ask for GPUs only when they may use one."""
    return 0 if config["device"] == "cpu" else config["gpus_per_job"]


def model_mem_mb(wildcards):
    """resources: mem_mb of a job running the networks of its {model} (and {explainer_model}), or of every model
    (preflight.job_memory: the process, the weights, the shard's images and the job's largest bounded pass)."""
    models = [getattr(wildcards, key) for key in ("model", "explainer_model") if key in wildcards.keys()] or MODELS
    return max(model_job_mb(MODEL_MEMORY[model], config, config["device"]) for model in models)


def model_mem_mb_of(model):
    return model_job_mb(MODEL_MEMORY[model], config, config["device"])


def similarity_mem_mb(wildcards):
    """resources: mem_mb of a job comparing {model}'s sanity maps (preflight.job_memory)."""
    return similarity_job_mb(
        config["sanity"]["n_images"],
        len(sanity_methods_of(wildcards.model)),
        config["models"][wildcards.model]["input_size"],
    )


# the images an explained model trains on (checkpoint.source train: the embedded dataset's train split)
EMBEDDED_TRAIN_IMAGES = config["dataset"].get("embedded", {}).get("counts", {}).get("train", 0)


def training_mem_mb(batch_size_of, images_held):
    """resources: mem_mb of a job training the weights of {model} on ``images_held`` images,
    ``batch_size_of(model)`` per step."""
    return lambda wildcards: training_job_mb(
        MODEL_MEMORY[wildcards.model], batch_size_of(wildcards.model), images_held, config["device"]
    )


def shard_files(pattern, model, variant, method):
    return expand(pattern, model=model, variant=variant, method=method, shard=PLAN.shards)


def checkpoint_of(wildcards):
    return f"results/checkpoints/{wildcards.model}.safetensors"


def one_of(names):
    """A wildcard regex matching exactly these names (nothing when the list is empty)."""
    return "|".join(names) if names else "(?!)"


MAP_SHARDS = "results/maps/{model}/{variant}/{method}/shard-{shard}.npz"
METRIC_SHARDS = "results/metrics/{model}/shard-{shard}.csv"  # every configured method and variant of a model
MIXED_METRIC_SHARDS = "results/metrics/{model}/{method}/shard-{shard}.csv"  # one cross pair's EEA (rules/mixed.smk)


def metric_files(model, method=None):
    """The per-image metric shards holding ``method``'s rows for ``model`` (default: the configured methods)."""
    if method is None or method in methods_of(model):
        return expand(METRIC_SHARDS, model=model, shard=PLAN.shards)
    return expand(MIXED_METRIC_SHARDS, model=model, method=method, shard=PLAN.shards)


def map_files_of_shard(wildcards):
    """(variant, map shard) of every configured method of one model and shard: one metric job scores them all."""
    return [
        (variant, f"results/maps/{wildcards.model}/{variant}/{method}/shard-{wildcards.shard}.npz")
        for method in methods_of(wildcards.model)
        for variant in VARIANTS
    ]


def replicate_map_files_of_shard(wildcards):
    """(variant, map shard) of the seeded methods of one model and shard in one replicate: its metric job's maps."""
    return [
        (
            variant,
            in_replicate(
                f"results/maps/{wildcards.model}/{variant}/{method}/shard-{wildcards.shard}.npz", wildcards.replicate
            ),
        )
        for method in replicated_methods_of(wildcards.model)
        for variant in VARIANTS
    ]


def map_shard_files(model, variant):
    """Every configured method's map shards of one model and variant."""
    return [f for method in methods_of(model) for f in shard_files(MAP_SHARDS, model, variant, method)]


def figure_inputs(wildcards):
    return {
        "maps": map_shard_files(wildcards.model, wildcards.variant),
        "labels": PLAN.split_label_file("test"),
        "classes": PLAN.classes_file,
    }


def map_files_per_variant(wildcards):
    """Named inputs, one per variant: every configured method's map shards of one model."""
    return {variant: map_shard_files(wildcards.model, variant) for variant in VARIANTS}


def all_tables():
    return expand("results/tables/{model}_{variant}.csv", model=MODELS, variant=VARIANTS)


def all_figures():
    """The per-model grids (paper Figs. 1, 11-16), then Figs. 9 and 10 (rules/mixed.smk, rules/two_object.smk)."""
    grids = expand("results/figures/qualitative_{model}_{variant}.png", model=MODELS, variant=VARIANTS)
    return grids + mixed_figures() + two_object_figures()


def all_sanity_checks():
    """Parameter-randomization outputs (rules/sanity.smk): its summary and every curve and grid, each a file target."""
    return sanity_outputs()


def mask_dir_of(split):
    """The object masks of an embedded split (figures outline them); None for ImageNet and folders, which ship none."""
    return f"{PLAN.image_root}/{split}/masks" if PLAN.kind == "embedded" else None


def workflow_file(relative):
    """A file shipped with the workflow, found from the Snakefile so --directory elsewhere works."""
    return str(WORKFLOW_ROOT / relative)


def image_root(wildcards):
    return PLAN.image_root


def model_settings(wildcards):
    return config["models"][wildcards.model]


FAMILIES = sorted({config["models"][m]["family"] for m in MODELS})


def family_baselines(family):
    """The registry methods configured for a family (EEA and pEEA have their own rules)."""
    return [m for m in config["methods"][family] if m not in EEA_METHODS]


def family_models(family, among=None):
    """The models (of ``among``, default all) of one family: the per-family rules' ``model`` wildcard."""
    return [m for m in (MODELS if among is None else among) if config["models"][m]["family"] == family]


def sanity_methods(family):
    """The methods the sanity checks (and data randomization, which compares with their level 1) run: sanity.methods
    among the family's configured ones, in config order, or all of them."""
    chosen = config["sanity"]["methods"]
    return [m for m in config["methods"][family] if chosen is None or m in chosen]


def sanity_methods_of(model):
    return sanity_methods(config["models"][model]["family"])


def explain_images_params(family, methods=None):
    """Params of the per-family rules where methods explain a fixed set of images (sanity checks, data randomization:
    ``methods``; two-object maps: every configured method): EEA is fine-tuned with the main run's settings."""
    return dict(
        methods=methods or config["methods"][family],
        model=model_settings,
        sanity=config["sanity"],
        explainer=config["explainer"],
        finetune=config["finetune"],
        scoring=SCORING,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
        batch_size=config["explainer"]["batch_size"],
    )


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
            "per_image": f"results/tables/{m}_{v}.per_image.csv",
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
    sections = {"claims": CLAIMS_OUTPUTS[1]}  # rules/claims.smk
    if PLAN.kind != "embedded":
        sections["skipped_images"] = "results/data/skipped_images.json"
    sections["paper_figures"] = "results/figures/paper_figures.json"
    if LOCALISATION_MASKS:  # rules/localisation.smk
        sections["localisation"] = "results/localisation/summary.json"
    sections.update(sanity_sections())  # rules/sanity.smk
    sections.update(DATA_RANDOMIZATION_SECTIONS)  # rules/data_randomization.smk
    return sections


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


# --- figures.smk: Qualitative grid in the style of the paper's Figs ------------------------------
def multi_class_figures(wildcards=None):
    return [
        {
            "model": m,
            "png": f"results/figures/two_object_{m}.png",
            "caption": f"{config['models'][m]['label']}: each two-object image (rows in pairs) explained for each of "
            "its two classes, that class's object outlined; class-specific methods first, then the class-agnostic "
            "ones (marked) for contrast. EEA: per-image fine-tuning towards the row's class from the "
            f"'{REFERENCE_VARIANT}' explainer.",
            **({"eea_maps": f"results/two_object/{m}/eea.npz"} if "eea" in methods_of(m) else {}),
        }
        for m in MODELS
        if PLAN.kind == "embedded"
    ]


def mixed_figure(wildcards=None):
    if not MIXED_PAIRS:
        return None
    return {
        "png": "results/figures/mixed_architectures.png",
        "table_html": "results/tables/mixed_architectures.html",
        "caption": "EEA maps for every explainer → explained model pair: the explainer has the first model's "
        "architecture, its backbone initialised from that model's checkpoint, and is pretrained against the second "
        f"model, then fine-tuned per image ('{REFERENCE_VARIANT}' variant).",
    }


# --- mixed.smk: Paper Fig ------------------------------------------------------------------------
from eea_repro.figures.mixed import mixed_method, pair_label

MIXED_FAMILIES = {config["models"][m]["family"] for m in MODELS}
MIXED_PAIRS = (
    [(explainer, model) for model in MODELS for explainer in MODELS]
    if config["figures"]["mixed_architectures"] and len(MIXED_FAMILIES) > 1
    else []
)


def mixed_figures():
    return ["results/figures/mixed_architectures.png"] if MIXED_PAIRS else []


def mixed_pair_files(pattern):
    """Per pair (explainer model, explained model): the shard files of its EEA maps or metrics."""
    return {
        (explainer, model): shard_files(pattern, model, REFERENCE_VARIANT, mixed_method(explainer, model))
        for explainer, model in MIXED_PAIRS
    }


def mixed_metric_files(replicate=0):
    """Per pair (explainer model, explained model): the metric shards holding its EEA rows (of seed replicate
    ``replicate``: a replicate's metric shards hold its seeded methods' rows, EEA's among them)."""
    return {
        (explainer, model): [
            in_replicate(path, replicate) for path in metric_files(model, mixed_method(explainer, model))
        ]
        for explainer, model in MIXED_PAIRS
    }


def mixed_pairs(kind, files_of_pairs):
    return [
        {
            "label": pair_label(config["models"][explainer]["label"], config["models"][model]["label"]),
            "method": mixed_method(explainer, model),
            kind: files,
        }
        for (explainer, model), files in files_of_pairs.items()
    ]


MIXED_MAPS = "results/maps/{model}/{variant}/{method}/shard-{shard}.npz"


# --- two_object.smk: Paper Fig -------------------------------------------------------------------
def two_object_figures():
    return expand("results/figures/two_object_{model}.png", model=MODELS) if PLAN.kind == "embedded" else []


def two_object_explainer(wildcards):
    """EEA and pEEA start from the explained model's REFERENCE_VARIANT explainer (of the job's seed replicate)."""
    if set(methods_of(wildcards.model)) & set(EEA_METHODS):
        path = f"results/explainers/{wildcards.model}/{REFERENCE_VARIANT}.safetensors"
        return {"explainer": in_replicate(path, wildcards.get("replicate", 0))}
    return {}


def two_object_map_files(wildcards):
    """Every configured method's two-object maps of one model; a seeded method's of the job's seed replicate."""
    replicate = wildcards.get("replicate", 0)
    return [
        in_replicate(path, replicate) if method in REPLICATED_METHODS else path
        for method in methods_of(wildcards.model)
        for path in [f"results/two_object/{wildcards.model}/{method}.npz"]
    ]


# --- sanity.smk: Parameter-randomization sanity checks (paper Section 3 --------------------------
from eea_repro.sanity.runs import (
    ORIGINAL,
    RUN_PATTERN,
    layer_kinds,
    parse_run,
    run_label,
    run_levels,
    sanity_runs,
    setting_name,
)

SANITY = config["sanity"]
SANITY_MODES = SANITY["modes"]
SANITY_SUMMARY = "results/sanity/summary.json"
# Each model's runs: every mode once per layer granularity of its family (sanity.layers.<family>)
SANITY_RUNS = {m: sanity_runs(SANITY, config["models"][m]["family"]) for m in MODELS}


def run_layer_count(model, run):
    """L of one run of a model: the number of layers its granularity finds."""
    which = parse_run(run)[1] or layer_kinds(SANITY, config["models"][model]["family"])[0]
    return SANITY_LAYERS[model][which]


def sanity_levels(model, run):
    """The levels x of one run (sanity.runs.run_levels): 1 (original) .. L + 1, L + 2 (every parameter)."""
    return run_levels(run, run_layer_count(model, run))


def sanity_maps(model, run, level, method, replicate=0):
    """One method's maps at one level; a seeded method's from seed replicate ``replicate`` (0: the run's own)."""
    path = f"results/sanity/{model}/{setting_name(run, level)}/{method}.npz"
    return in_replicate(path, replicate) if method in REPLICATED_METHODS else path


def sanity_replicated_methods(family):
    """The sanity methods a seed replicate re-makes: those whose maps change with the seed."""
    return [m for m in sanity_methods(family) if m in REPLICATED_METHODS]


def fully_randomized_maps(model, method):
    """Maps of one method on the fully random network (cascading, x = L + 2)."""
    return sanity_maps(model, "cascading", run_layer_count(model, "cascading") + 2, method)


def sanity_predictions(model, run, level):
    return f"results/sanity/{model}/{setting_name(run, level)}/predictions.csv"


def sanity_settings(model):
    """Every randomized model the sanity checks of ``model`` explain, each once: the original (which data
    randomization compares with too), then each run's levels."""
    settings = [ORIGINAL]
    for run in SANITY_RUNS[model]:
        settings += [s for s in (setting_name(run, level) for level in sanity_levels(model, run)) if s not in settings]
    return settings


def sanity_jobs(model):
    """``model``'s settings cut into the jobs of rules/sanity.smk, sanity.settings_per_job each (null: one job)."""
    settings = sanity_settings(model)
    size = SANITY["settings_per_job"] or len(settings)
    return [settings[start : start + size] for start in range(0, len(settings), size)]


def sanity_reference_maps(model, settings, methods, replicate=0):
    """Method -> the evaluated 'target' map shards of ``model`` (of seed replicate ``replicate``) that a sanity job's
    original setting takes instead of remaking them (the same computation on the same images and classes); empty
    without the original setting or a 'target' variant. Seeded methods (a map depends on its place in the job's
    batches) are remade."""
    if ORIGINAL not in settings or "target" not in VARIANTS:
        return {}
    return {
        method: [
            in_replicate(path, replicate) if method in REPLICATED_METHODS else path
            for path in shard_files(MAP_SHARDS, model, "target", method)
        ]
        for method in methods
        if method in methods_of(model) and method not in SEEDED_METHODS
    }


def sanity_job_label(jobs, index):
    """Names a sanity-map job's log and benchmark: its setting when alone, else its place among the model's jobs."""
    return jobs[index][0] if len(jobs[index]) == 1 else f"{index + 1}of{len(jobs)}"


def sanity_level_inputs(methods, predictions=False):
    """Input function: level k -> the maps of ``methods`` at level k, named 'level<k>' (the script parses k), and
    with ``predictions`` that level's model predictions, named 'predictions<k>'. A ``replicate`` wildcard takes the
    seeded methods' maps of that seed replicate."""

    def inputs(wildcards):
        levels = sanity_levels(wildcards.model, wildcards.run)
        replicate = wildcards.get("replicate", 0)
        named = {
            f"level{level}": [
                sanity_maps(wildcards.model, wildcards.run, level, m, replicate) for m in methods(wildcards)
            ]
            for level in levels
        }
        if predictions:
            named |= {
                f"predictions{level}": sanity_predictions(wildcards.model, wildcards.run, level) for level in levels
            }
        return named

    return inputs


def sanity_figures(model, run):
    """Figure name -> PNG (a PDF sits next to each) of one model and run; EEA's curve and grid need EEA. Efficient
    MPRT's two levels make no curve: a box plot of its per-image scores."""
    if parse_run(run)[0] == "efficient":
        return {"emprt_box": f"results/figures/sanity_{model}_{run}_emprt.png"}
    figures = {"methods_curves": f"results/figures/sanity_{model}_{run}_methods.png"}
    if "eea" in sanity_methods_of(model):
        figures["eea_curve"] = f"results/figures/sanity_{model}_{run}_eea.png"
        figures["grid"] = f"results/figures/sanity_{model}_{run}_grid.png"
    return figures


def sanity_outputs():
    """The summary the report reads and every sanity figure (empty when sanity.modes is empty)."""
    if not SANITY_MODES:
        return []
    figures = [f for m in MODELS for run in SANITY_RUNS[m] for f in sanity_figures(m, run).values()]
    return [SANITY_SUMMARY] + figures


def sanity_sections():
    return {"sanity": SANITY_SUMMARY} if SANITY_MODES else {}


# --- claims.smk: the appendix's claims against this run's evidence ------------------------------------------
CLAIMS_OUTPUTS = multiext("results/claims", ".csv", ".json", ".html")


def claims_evidence():
    """The evidence files of this run, by kind, and why a kind is absent (the claims module reads both)."""
    tables = [
        {
            "model": m,
            "label": config["models"][m]["label"],
            "family": config["models"][m]["family"],
            "variant": v,
            "per_image": f"results/tables/{m}_{v}.per_image.csv",
        }
        for m in MODELS
        for v in VARIANTS
    ]
    maps = [
        {
            "model": m,
            "label": config["models"][m]["label"],
            "variant": v,
            "size": config["models"][m]["input_size"],
            "files": {
                method: shard_files(MIXED_MAPS, m, v, method)
                for method in ("gradcam", "eea")
                if method in methods_of(m)
            },
        }
        for m in family_models("cnn")
        for v in VARIANTS
    ]
    evidence = {
        "tables": tables,
        "maps": maps,
        "reasons": {
            "maps": "no CNN model is configured (config key 'models')",
            "sanity": "config key 'sanity.modes' is empty",
            "data_randomization": "config key 'data_randomization.models' is empty",
            "two_object": "two-object images exist in the embedded dataset only, when config key "
            "'dataset.embedded.n_two_object' is above 0",
            "mixed": "config key 'figures.mixed_architectures' is false, or the models are of one family",
        },
    }
    if SANITY_MODES:
        evidence["sanity"] = [
            {
                "model": m,
                "mode": parse_run(run)[0],
                "run": run,
                "similarity": f"results/sanity/{m}/{run}.similarity.csv",
                "label": config["models"][m]["label"] + (f" ({parse_run(run)[1]} layers)" if parse_run(run)[1] else ""),
            }
            for m in MODELS
            for run in SANITY_RUNS[m]
        ]
    if DATA_RANDOMIZED_MODELS:
        evidence["data_randomization"] = [
            {
                "model": m,
                "label": config["models"][m]["label"],
                "record": f"results/data_randomization/{m}/model.json",
                "similarity": f"results/data_randomization/{m}/similarity.csv",
                "target_train_accuracy": DATA_RANDOMIZATION["target_train_accuracy"],
            }
            for m in DATA_RANDOMIZED_MODELS
        ]
    if LOCALISATION_TWO_OBJECT:
        evidence["two_object"] = [
            {
                "model": m,
                "label": config["models"][m]["label"],
                "per_image": f"results/localisation/{m}/two_object.per_image.csv",
            }
            for m in MODELS
        ]
    if MIXED_PAIRS:
        evidence["mixed"] = {
            "per_image": "results/tables/mixed_architectures.per_image.csv",
            "pairs": [
                {
                    "label": pair_label(config["models"][e]["label"], config["models"][m]["label"]),
                    "explainer": e,
                    "model": m,
                }
                for e, m in MIXED_PAIRS
            ],
        }
    evidence["replicates"] = [replicate_evidence(evidence, replicate) for replicate in REPLICATES]
    return evidence


def replicate_evidence(evidence, replicate):
    """Every evidence kind of the run as seed replicate ``replicate`` re-made it, with its files: a seeded method's
    from the replicate, every other the run's own."""
    maps = [
        {
            **entry,
            "files": {
                method: [in_replicate(path, replicate) for path in files] if method in REPLICATED_METHODS else files
                for method, files in entry["files"].items()
            },
        }
        for entry in evidence["maps"]
    ]
    kinds = {
        "tables": [{**entry, "per_image": in_replicate(entry["per_image"], replicate)} for entry in evidence["tables"]],
        "maps": maps,
    }
    if "sanity" in evidence:
        kinds["sanity"] = [
            {**entry, "similarity": in_replicate(entry["similarity"], replicate)} for entry in evidence["sanity"]
        ]
    if "data_randomization" in evidence:
        kinds["data_randomization"] = [
            {
                **entry,
                "record": in_replicate(entry["record"], replicate),
                "similarity": in_replicate(entry["similarity"], replicate),
            }
            for entry in evidence["data_randomization"]
        ]
    if "two_object" in evidence:
        kinds["two_object"] = [
            {**entry, "per_image": in_replicate(entry["per_image"], replicate)} for entry in evidence["two_object"]
        ]
    if "mixed" in evidence:
        kinds["mixed"] = {**evidence["mixed"], "per_image": in_replicate(evidence["mixed"]["per_image"], replicate)}
    return kinds


def evidence_files(evidence):
    """Every file path named in the evidence (the rule's inputs)."""
    if isinstance(evidence, dict):
        return [f for key, value in evidence.items() if key != "reasons" for f in evidence_files(value)]
    if isinstance(evidence, list):
        return [f for value in evidence for f in evidence_files(value)]
    return [evidence] if isinstance(evidence, str) and evidence.startswith("results/") else []
