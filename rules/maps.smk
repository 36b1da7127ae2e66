# Explanation maps, one shard of evaluated images per job, stored at native resolution (float16) with the image ids
# and the classes they explain, one file per (variant, method). One job makes every baseline of a model for a shard
# and every variant (a map two variants share is made once); so does one job for EEA and pEEA (its start).

for maps_family in FAMILIES:
    if not family_baselines(maps_family):
        continue

    rule:
        name:
            f"baseline_maps_{maps_family}"
        input:
            checkpoint=checkpoint_of,
            images=PLAN.split_label_file("test"),
            classes=PLAN.classes_file,
        output:
            [
                f"results/maps/{{model}}/{variant}/{method}/shard-{{shard}}.npz"
                for method in family_baselines(maps_family)
                for variant in VARIANTS
            ],
        log:
            "logs/maps/{model}_baselines_{shard}.log",
        benchmark:
            "benchmarks/maps/{model}_baselines_{shard}.tsv"
        wildcard_constraints:
            model=one_of(family_models(maps_family)),
        priority: 40  # the longest chain to the tables: start it before the independent sanity jobs
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            gpu=gpu_request,
            mem_mb=model_mem_mb,
        params:
            methods=family_baselines(maps_family),
            variants=VARIANTS,
            model=model_settings,
            image_root=image_root,
            shard_range=shard_range,
            seed=config["seed"],
            device=config["device"],
            precision=config["precision"],
            batch_size=config["explainer"]["batch_size"],
            timing="benchmarks/maps/{model}_baselines_{shard}.methods.csv",
        script:
            "../scripts/make_baseline_maps.py"


rule eea_maps:
    input:
        checkpoint=checkpoint_of,
        explainers=expand("results/explainers/{{model}}/{variant}.safetensors", variant=VARIANTS),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps=[
            f"results/maps/{{model}}/{variant}/{method}/shard-{{shard}}.npz"
            for method in ("eea", "peea")
            for variant in VARIANTS
        ],
        selection=expand("results/maps/{{model}}/{variant}/eea/shard-{{shard}}.steps.csv", variant=VARIANTS),
    log:
        f"logs/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}.log",
    benchmark:
        f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}.tsv"
    wildcard_constraints:
        model=one_of([m for m in MODELS if "eea" in methods_of(m)]),
    priority: 40  # the longest chain to the tables: start it before the independent sanity jobs
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        methods=["eea", "peea"],
        variants=VARIANTS,
        model=model_settings,
        explainer=config["explainer"],
        finetune=config["finetune"],
        scoring=SCORING,
        image_root=image_root,
        shard_range=shard_range,
        device=config["device"],
        timing=f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}.methods.csv",
    script:
        "../scripts/make_eea_maps.py"


rule peea_maps:  # models whose methods list pEEA without EEA: no fine-tuning
    input:
        checkpoint=checkpoint_of,
        explainers=expand("results/explainers/{{model}}/{variant}.safetensors", variant=VARIANTS),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps=expand("results/maps/{{model}}/{variant}/peea/shard-{{shard}}.npz", variant=VARIANTS),
    log:
        f"logs/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}.log",
    benchmark:
        f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}.tsv"
    wildcard_constraints:
        model=one_of([m for m in MODELS if "peea" in methods_of(m) and "eea" not in methods_of(m)]),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        methods=["peea"],
        variants=VARIANTS,
        model=model_settings,
        explainer=config["explainer"],
        finetune=config["finetune"],
        scoring=SCORING,
        image_root=image_root,
        shard_range=shard_range,
        device=config["device"],
        timing=f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}.methods.csv",
    script:
        "../scripts/make_eea_maps.py"


# Seed replicates (config `replicates`): EEA and pEEA from the replicate's explainers, and the seeded controls (the
# random map) drawn from the replicate's seed, under results/replicate-<r>/maps/.
REPLICATE_EXPLAINERS = expand(
    in_replicate("results/explainers/{{model}}/{variant}.safetensors", "{{replicate}}"), variant=VARIANTS
)


use rule eea_maps as eea_maps_replicate with:
    input:
        checkpoint=checkpoint_of,
        explainers=REPLICATE_EXPLAINERS,
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps=[
            in_replicate(f"results/maps/{{model}}/{variant}/{method}/shard-{{shard}}.npz", "{replicate}")
            for method in ("eea", "peea")
            for variant in VARIANTS
        ],
        selection=[
            in_replicate(f"results/maps/{{model}}/{variant}/eea/shard-{{shard}}.steps.csv", "{replicate}")
            for variant in VARIANTS
        ],
    log:
        f"logs/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}_replicate-{{replicate}}.log",
    benchmark:
        f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}_replicate-{{replicate}}.tsv"
    params:
        timing=f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_eea_{{shard}}_replicate-{{replicate}}.methods.csv",


use rule peea_maps as peea_maps_replicate with:
    input:
        checkpoint=checkpoint_of,
        explainers=REPLICATE_EXPLAINERS,
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        maps=[
            in_replicate(f"results/maps/{{model}}/{variant}/peea/shard-{{shard}}.npz", "{replicate}")
            for variant in VARIANTS
        ],
    log:
        f"logs/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}_replicate-{{replicate}}.log",
    benchmark:
        f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}_replicate-{{replicate}}.tsv"
    params:
        timing=f"benchmarks/maps/{{model}}_{ALL_VARIANTS}_peea_{{shard}}_replicate-{{replicate}}.methods.csv",


rule seeded_maps_replicate:
    input:
        checkpoint=checkpoint_of,
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        [
            in_replicate(f"results/maps/{{model}}/{variant}/{{method}}/shard-{{shard}}.npz", "{replicate}")
            for variant in VARIANTS
        ],
    log:
        "logs/maps/{model}_{method}_{shard}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/maps/{model}_{method}_{shard}_replicate-{replicate}.tsv"
    wildcard_constraints:
        method=one_of(sorted(SEEDED_METHODS)),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        methods=lambda wildcards: [wildcards.method],
        variants=VARIANTS,
        model=model_settings,
        image_root=image_root,
        shard_range=shard_range,
        seed=replicate_training_seed,
        device=config["device"],
        precision=config["precision"],
        batch_size=config["explainer"]["batch_size"],
        timing="benchmarks/maps/{model}_{method}_{shard}_replicate-{replicate}.methods.csv",
    script:
        "../scripts/make_baseline_maps.py"
