# Checkpoints of the explained models: fetched through timm (or copied from a local file), or, for the embedded
# dataset, trained here. Either way the output is one safetensors file plus a record of its sha256.


rule train_explained_model:
    priority: 200  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    input:
        train=PLAN.split_label_file("train"),
        val=PLAN.split_label_file("val"),
        test=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        checkpoint=protected("results/checkpoints/{model}.safetensors"),
        record="results/checkpoints/{model}.json",
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    params:
        model=model_settings,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume="results/checkpoints/{model}.resume.pt",
    threads: 2
    resources:
        gpu=gpu_request,
    log:
        "logs/checkpoints/train_{model}.log",
    benchmark:
        "benchmarks/checkpoints/train_{model}.tsv"
    script:
        "../scripts/train_explained_model.py"


rule fetch_checkpoint:
    conda:
        "../envs/torch.yaml"
    input:
        classes=PLAN.classes_file,
    output:
        checkpoint=protected("results/checkpoints/{model}.safetensors"),
        record="results/checkpoints/{model}.json",
    wildcard_constraints:
        model=one_of(FETCHED_MODELS),
    params:
        model=model_settings,
    localrule: True
    retries: 2
    log:
        "logs/checkpoints/fetch_{model}.log",
    script:
        "../scripts/fetch_checkpoint.py"
