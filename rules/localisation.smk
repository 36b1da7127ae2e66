# Localisation on ground-truth object masks (beyond the paper): pointing game and mask AP per method and variant,
# the class-specific pointing game on the two-object images, and one table per explained model. Runs on the embedded
# data (its masks come with it) and on ImageNet when localisation.masks_dir names a folder of <image stem>.png masks.


FOLDER_BOXES = PLAN.kind == "folder" and config["dataset"]["folder"]["boxes"]
LOCALISATION_MASKS = (
    config["localisation"]["masks_dir"] or mask_dir_of("test") or (FOLDER_MASKS if FOLDER_BOXES else None)
)
LOCALISATION_TWO_OBJECT = PLAN.kind == "embedded" and config["dataset"]["embedded"]["n_two_object"] > 0


rule localisation_scores:
    input:
        unpack(map_files_per_variant),  # one job per model scores every variant: one start, masks read once
        split=PLAN.split_label_file("test"),  # written after the embedded images and masks
    output:
        expand("results/localisation/{{model}}/{variant}.per_image.csv", variant=VARIANTS),
    log:
        "logs/localisation/{model}_scores.log",
    benchmark:
        "benchmarks/localisation/{model}_scores.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        variants=VARIANTS,
        mask_dir=LOCALISATION_MASKS,
        size=lambda wildcards: config["models"][wildcards.model]["input_size"],
        device=config["device"],
    script:
        "../scripts/localisation_scores.py"


rule localisation_two_object:
    input:
        maps=two_object_map_files,
        labels=PLAN.split_label_file("two_object"),
    output:
        "results/localisation/{model}/two_object.per_image.csv",
    log:
        "logs/localisation/{model}_two_object.log",
    conda:
        "../envs/torch.yaml"
    params:
        mask_dir=mask_dir_of("two_object"),
        size=lambda wildcards: config["models"][wildcards.model]["input_size"],
    script:
        "../scripts/localisation_two_object.py"


use rule localisation_two_object as localisation_two_object_replicate with:
    output:
        in_replicate("results/localisation/{model}/two_object.per_image.csv", "{replicate}"),
    log:
        "logs/localisation/{model}_two_object_replicate-{replicate}.log",


rule localisation_table:
    input:
        per_image=expand("results/localisation/{{model}}/{variant}.per_image.csv", variant=VARIANTS),
        two_object=["results/localisation/{model}/two_object.per_image.csv"] if LOCALISATION_TWO_OBJECT else [],
    output:
        csv=report(
            "results/tables/localisation_{model}.csv",
            caption="../report/captions/localisation.rst",
            category="Localisation",
            labels={"model": "{model}"},
        ),
        html="results/tables/localisation_{model}.html",
        json="results/localisation/{model}.json",
    log:
        "logs/localisation/{model}_table.log",
    conda:
        "../envs/report.yaml"
    params:
        variants=VARIANTS,
        caption=lambda wildcards: f"{config['models'][wildcards.model]['label']}: localisation on ground-truth "
        "object masks, % (mean ± CI half-width over images)",
        tables=config["tables"],
        seed=config["seed"],
        method_labels=METHOD_LABELS,
    script:
        "../scripts/localisation_table.py"


rule localisation_summary:
    input:
        expand("results/localisation/{model}.json", model=MODELS),
    output:
        "results/localisation/summary.json",
    log:
        "logs/localisation/summary.log",
    conda:
        "../envs/report.yaml"
    params:
        models=MODELS,
        labels={m: config["models"][m]["label"] for m in MODELS},
        masks_source=(
            "the masks in localisation.masks_dir"
            if config["localisation"]["masks_dir"]
            else (
                "masks rasterised from the boxes in dataset.folder.boxes"
                if FOLDER_BOXES
                else "the embedded data's object masks"
            )
        ),
    script:
        "../scripts/localisation_summary.py"
