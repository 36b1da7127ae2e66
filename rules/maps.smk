# Explanation maps, one shard of evaluated images per job, stored at native resolution (float16) with the image ids
# and the classes they explain. A baseline's job writes every variant's shard: maps the variants share are made once.


rule baseline_maps:
    conda:
        "../envs/torch.yaml"
    input:
        checkpoint=checkpoint_of,
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        expand("results/maps/{{model}}/{variant}/{{method}}/shard-{{shard}}.npz", variant=VARIANTS),
    wildcard_constraints:
        method=one_of(BASELINES),
    params:
        variants=VARIANTS,
        model=model_settings,
        image_root=image_root,
        shard_range=shard_range,
        seed=config["seed"],
        device=config["device"],
        precision=config["precision"],
        batch_size=config["explainer"]["batch_size"],
    threads: 1
    resources:
        gpu=gpu_request,
    log:
        f"logs/maps/{{model}}_{ALL_VARIANTS}_{{method}}_{{shard}}.log",
    benchmark:
        f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_{{method}}_{{shard}}.tsv"
    script:
        "../scripts/make_baseline_maps.py"


rule eea_maps:
    conda:
        "../envs/torch.yaml"
    input:
        checkpoint=checkpoint_of,
        explainer="results/explainers/{model}/{variant}.safetensors",
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps="results/maps/{model}/{variant}/{method}/shard-{shard}.npz",
        selection="results/maps/{model}/{variant}/{method}/shard-{shard}.steps.csv",
    wildcard_constraints:
        method="eea|peea",
    params:
        model=model_settings,
        explainer=config["explainer"],
        finetune=config["finetune"],
        scoring=SCORING,
        image_root=image_root,
        shard_range=shard_range,
        device=config["device"],
    threads: 1
    resources:
        gpu=gpu_request,
    log:
        "logs/maps/{model}_{variant}_{method}_{shard}.log",
    benchmark:
        "benchmarks/maps/{model}_{variant}_{method}_{shard}.tsv"
    script:
        "../scripts/make_eea_maps.py"
