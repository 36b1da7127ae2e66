# Metrics: per-image ADP, PIC, POS, NEG, DEL, INS for one map shard, then one table per (model, variant).


rule evaluate_maps:
    conda:
        "../envs/torch.yaml"
    input:
        checkpoint=checkpoint_of,
        maps="results/maps/{model}/{variant}/{method}/shard-{shard}.npz",
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        "results/metrics/{model}/{variant}/{method}/shard-{shard}.csv",
    params:
        model=model_settings,
        metrics=config["metrics"],
        image_root=image_root,
        shard_range=shard_range,
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
    threads: 1
    resources:
        gpu=gpu_request,
    log:
        "logs/metrics/{model}_{variant}_{method}_{shard}.log",
    benchmark:
        "benchmarks/metrics/{model}_{variant}_{method}_{shard}.tsv"
    script:
        "../scripts/evaluate_maps.py"


rule metric_table:
    conda:
        "../envs/torch.yaml"
    input:
        unpack(table_inputs),
    output:
        csv="results/tables/{model}_{variant}.csv",
        tex="results/tables/{model}_{variant}.tex",
        html="results/tables/{model}_{variant}.html",
        per_image="results/tables/{model}_{variant}.per_image.csv",
    params:
        tables=config["tables"],
        seed=config["seed"],
        caption=table_caption,
    log:
        "logs/tables/{model}_{variant}.log",
    script:
        "../scripts/make_table.py"
