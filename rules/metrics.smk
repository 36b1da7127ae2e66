# Metrics: per-image ADP, PIC, POS, NEG, DEL, INS of every method's maps of one shard, both variants, in one job (the
# model, the images, their clean and black forwards and tie permutations are shared; a map two variants share is
# scored once), then one table per (model, variant).


rule evaluate_maps:
    input:
        checkpoint=checkpoint_of,
        maps=lambda wildcards: [path for _, path in map_files_of_shard(wildcards)],
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        METRIC_SHARDS,
    log:
        "logs/metrics/{model}_{shard}.log",
    benchmark:
        "benchmarks/metrics/{model}_{shard}.tsv"
    priority: 40  # the longest chain to the tables: start it before the independent sanity jobs
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        map_files=map_files_of_shard,
        model=model_settings,
        metrics=config["metrics"],
        image_root=image_root,
        shard_range=shard_range,
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
        timing="benchmarks/metrics/{model}_{shard}.methods.csv",
    script:
        "../scripts/evaluate_maps.py"


rule metric_table:
    input:
        per_image=lambda wildcards: metric_files(wildcards.model),
    output:
        csv=report(
            "results/tables/{model}_{variant}.csv",
            caption="../report/captions/table.rst",
            category="Results tables",
            labels={"model": "{model}", "variant": "{variant}"},
        ),
        tex="results/tables/{model}_{variant}.tex",
        html="results/tables/{model}_{variant}.html",
        per_image="results/tables/{model}_{variant}.per_image.csv",
    log:
        "logs/tables/{model}_{variant}.log",
    conda:
        "../envs/report.yaml"
    params:
        methods=lambda wildcards: methods_of(wildcards.model),
        tables=config["tables"],
        seed=config["seed"],
        caption=table_caption,
        method_labels=METHOD_LABELS,
    script:
        "../scripts/make_table.py"


# Seed replicates (config `replicates`): the seeded methods' maps of a replicate scored as the run's own (same tie
# orders), and the replicate's tables: the run's rows with the seeded methods' rows replaced by the replicate's.
use rule evaluate_maps as evaluate_maps_replicate with:
    input:
        checkpoint=checkpoint_of,
        maps=lambda wildcards: [path for _, path in replicate_map_files_of_shard(wildcards)],
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        in_replicate(METRIC_SHARDS, "{replicate}"),
    log:
        "logs/metrics/{model}_{shard}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/metrics/{model}_{shard}_replicate-{replicate}.tsv"
    params:
        map_files=replicate_map_files_of_shard,
        timing="benchmarks/metrics/{model}_{shard}_replicate-{replicate}.methods.csv",


use rule metric_table as metric_table_replicate with:
    input:
        per_image=lambda wildcards: metric_files(wildcards.model),
        replaced_by=lambda wildcards: (
            expand(in_replicate(METRIC_SHARDS, wildcards.replicate), model=wildcards.model, shard=PLAN.shards)
            if replicated_methods_of(wildcards.model)
            else []
        ),
    output:
        csv=in_replicate("results/tables/{model}_{variant}.csv", "{replicate}"),
        tex=in_replicate("results/tables/{model}_{variant}.tex", "{replicate}"),
        html=in_replicate("results/tables/{model}_{variant}.html", "{replicate}"),
        per_image=in_replicate("results/tables/{model}_{variant}.per_image.csv", "{replicate}"),
    log:
        "logs/tables/{model}_{variant}_replicate-{replicate}.log",
    params:
        caption=lambda wildcards: f"{table_caption(wildcards)}, seed replicate {wildcards.replicate}",
