# Paper Fig. 9, EEA with mixed architectures: every configured model's architecture as the explainer of every
# configured model (ViT and ResNet: four pairs). A cross pair's explainer starts from the explainer model's checkpoint
# and is pretrained against the explained model with the usual code; its EEA maps, metrics, a table of the pairs and a
# grid of images x pairs follow. Same-model pairs reuse the ordinary EEA maps. Only the 'target' variant
# (REFERENCE_VARIANT) is made: one extra explainer and one extra map job per shard per cross pair.


rule pretrain_mixed_explainer:
    input:
        checkpoint=checkpoint_of,
        explainer_checkpoint="results/checkpoints/{explainer_model}.safetensors",
        train=PLAN.split_label_file("explainer_train"),
        val=PLAN.split_label_file("explainer_val"),
        classes=PLAN.classes_file,
    output:
        explainer=protected("results/explainers/{model}/mixed_{explainer_model}_{variant}.safetensors"),
        history="results/explainers/{model}/mixed_{explainer_model}_{variant}.json",
    log:
        "logs/explainer/{model}_mixed_{explainer_model}_{variant}.log",
    benchmark:
        "benchmarks/explainer/{model}_mixed_{explainer_model}_{variant}.tsv"
    wildcard_constraints:
        explainer_model=one_of(MODELS),
    priority: 180  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        model=model_settings,
        explainer_model=lambda wildcards: config["models"][wildcards.explainer_model],
        explainer=config["explainer"],
        scoring=SCORING,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume_dir="results/explainers/{model}/mixed_{explainer_model}_{variant}.resume",
    script:
        "../scripts/pretrain_mixed_explainer.py"


rule mixed_eea_maps:
    input:
        checkpoint=checkpoint_of,
        explainer="results/explainers/{model}/mixed_{explainer_model}_{variant}.safetensors",
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps="results/maps/{model}/{variant}/eea_by_{explainer_model}/shard-{shard}.npz",
        selection="results/maps/{model}/{variant}/eea_by_{explainer_model}/shard-{shard}.steps.csv",
    log:
        "logs/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}.log",
    benchmark:
        "benchmarks/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}.tsv"
    wildcard_constraints:
        explainer_model=one_of(MODELS),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        model=model_settings,
        explainer_model=lambda wildcards: config["models"][wildcards.explainer_model],
        method=lambda wildcards: mixed_method(wildcards.explainer_model, wildcards.model),
        explainer=config["explainer"],
        finetune=config["finetune"],
        scoring=SCORING,
        image_root=image_root,
        shard_range=shard_range,
        device=config["device"],
        timing="benchmarks/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}.methods.csv",
    script:
        "../scripts/make_mixed_eea_maps.py"


rule evaluate_mixed_maps:
    input:
        checkpoint=checkpoint_of,
        maps=f"results/maps/{{model}}/{REFERENCE_VARIANT}/{{method}}/shard-{{shard}}.npz",
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        MIXED_METRIC_SHARDS,
    log:
        "logs/metrics/{model}_{method}_{shard}.log",
    benchmark:
        "benchmarks/metrics/{model}_{method}_{shard}.tsv"
    wildcard_constraints:
        method=f"eea_by_({one_of(MODELS)})",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        map_files=lambda wildcards: [
            (
                REFERENCE_VARIANT,
                f"results/maps/{wildcards.model}/{REFERENCE_VARIANT}/{wildcards.method}/"
                f"shard-{wildcards.shard}.npz",
            )
        ],
        model=model_settings,
        metrics=config["metrics"],
        image_root=image_root,
        shard_range=shard_range,
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
        timing="benchmarks/metrics/{model}_{method}_{shard}.methods.csv",
    script:
        "../scripts/evaluate_maps.py"


rule mixed_table:
    input:
        per_image=lambda wildcards: [f for files in mixed_metric_files().values() for f in files],
    output:
        csv=report(
            "results/tables/mixed_architectures.csv",
            caption="../report/captions/mixed.rst",
            category="Mixed architectures",
        ),
        tex="results/tables/mixed_architectures.tex",
        html="results/tables/mixed_architectures.html",
        per_image="results/tables/mixed_architectures.per_image.csv",
    log:
        "logs/tables/mixed_architectures.log",
    conda:
        "../envs/torch.yaml"
    params:
        pairs=mixed_pairs("per_image", mixed_metric_files()),
        variant=REFERENCE_VARIANT,
        tables=config["tables"],
        seed=config["seed"],
        caption=f"EEA with mixed architectures (explainer → explained model), '{REFERENCE_VARIANT}' variant",
    script:
        "../scripts/make_mixed_table.py"


rule mixed_grid:
    input:
        maps=lambda wildcards: [f for files in mixed_pair_files(MIXED_MAPS).values() for f in files],
        labels=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        png=report(
            "results/figures/mixed_architectures.png",
            caption="../report/captions/mixed.rst",
            category="Mixed architectures",
        ),
        pdf="results/figures/mixed_architectures.pdf",
    log:
        "logs/figures/mixed_architectures.log",
    conda:
        "../envs/report.yaml"
    params:
        pairs=mixed_pairs("maps", mixed_pair_files(MIXED_MAPS)),
        display_model=max((config["models"][m] for m in MODELS), key=lambda model: model["input_size"]),
        figures=config["figures"],
        image_root=image_root,
        mask_dir=mask_dir_of("test"),
        seed=config["seed"],
        title=f"EEA with mixed architectures (explainer → explained model), '{REFERENCE_VARIANT}' variant",
    script:
        "../scripts/make_mixed_grid.py"


# Seed replicates (config `replicates`): each cross pair's explainer pretrained again with the replicate's seed, its
# EEA maps and metrics, and the replicate's table of every pair (same-model pairs: the replicate's own EEA).
use rule pretrain_mixed_explainer as pretrain_mixed_explainer_replicate with:
    output:
        explainer=protected(
            in_replicate("results/explainers/{model}/mixed_{explainer_model}_{variant}.safetensors", "{replicate}")
        ),
        history=in_replicate("results/explainers/{model}/mixed_{explainer_model}_{variant}.json", "{replicate}"),
    log:
        "logs/explainer/{model}_mixed_{explainer_model}_{variant}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/explainer/{model}_mixed_{explainer_model}_{variant}_replicate-{replicate}.tsv"
    params:
        seed=replicate_training_seed,
        resume_dir=in_replicate("results/explainers/{model}/mixed_{explainer_model}_{variant}.resume", "{replicate}"),


use rule mixed_eea_maps as mixed_eea_maps_replicate with:
    input:
        checkpoint=checkpoint_of,
        explainer=in_replicate(
            "results/explainers/{model}/mixed_{explainer_model}_{variant}.safetensors", "{replicate}"
        ),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps=in_replicate("results/maps/{model}/{variant}/eea_by_{explainer_model}/shard-{shard}.npz", "{replicate}"),
        selection=in_replicate(
            "results/maps/{model}/{variant}/eea_by_{explainer_model}/shard-{shard}.steps.csv", "{replicate}"
        ),
    log:
        "logs/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}_replicate-{replicate}.tsv"
    params:
        timing="benchmarks/maps/{model}_{variant}_eea_by_{explainer_model}_{shard}_replicate-{replicate}.methods.csv",


use rule evaluate_mixed_maps as evaluate_mixed_maps_replicate with:
    input:
        checkpoint=checkpoint_of,
        maps=in_replicate(f"results/maps/{{model}}/{REFERENCE_VARIANT}/{{method}}/shard-{{shard}}.npz", "{replicate}"),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        in_replicate(MIXED_METRIC_SHARDS, "{replicate}"),
    log:
        "logs/metrics/{model}_{method}_{shard}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/metrics/{model}_{method}_{shard}_replicate-{replicate}.tsv"
    params:
        map_files=lambda wildcards: [
            (
                REFERENCE_VARIANT,
                in_replicate(
                    f"results/maps/{wildcards.model}/{REFERENCE_VARIANT}/{wildcards.method}/shard-{wildcards.shard}.npz",
                    wildcards.replicate,
                ),
            )
        ],
        timing="benchmarks/metrics/{model}_{method}_{shard}_replicate-{replicate}.methods.csv",


use rule mixed_table as mixed_table_replicate with:
    input:
        per_image=lambda wildcards: [f for files in mixed_metric_files(wildcards.replicate).values() for f in files],
    output:
        csv=in_replicate("results/tables/mixed_architectures.csv", "{replicate}"),
        tex=in_replicate("results/tables/mixed_architectures.tex", "{replicate}"),
        html=in_replicate("results/tables/mixed_architectures.html", "{replicate}"),
        per_image=in_replicate("results/tables/mixed_architectures.per_image.csv", "{replicate}"),
    log:
        "logs/tables/mixed_architectures_replicate-{replicate}.log",
    params:
        pairs=lambda wildcards: mixed_pairs("per_image", mixed_metric_files(wildcards.replicate)),
