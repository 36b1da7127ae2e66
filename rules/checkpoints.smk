# Checkpoints of the explained models: fetched through timm (or copied from a local file), or, for the embedded
# dataset, trained here. Either way the output is one safetensors file plus a record of its sha256.


rule train_explained_model:
    input:
        train=PLAN.split_label_file("train"),
        val=PLAN.split_label_file("val"),
        test=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        checkpoint=protected("results/checkpoints/{model}.safetensors"),
        record="results/checkpoints/{model}.json",
    log:
        "logs/checkpoints/train_{model}.log",
    benchmark:
        "benchmarks/checkpoints/train_{model}.tsv"
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    priority: 200  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpu_request,
        mem_mb=training_mem_mb(
            lambda model: config["models"][model]["train"]["batch_size"],
            EMBEDDED_TRAIN_IMAGES,
        ),
    params:
        model=model_settings,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume="results/checkpoints/{model}.resume.pt",
    script:
        "../scripts/train_explained_model.py"


rule fetch_checkpoint:
    input:
        classes=PLAN.classes_file,
    output:
        checkpoint=protected("results/checkpoints/{model}.safetensors"),
        record="results/checkpoints/{model}.json",
    log:
        "logs/checkpoints/fetch_{model}.log",
    wildcard_constraints:
        model=one_of(FETCHED_MODELS),
    # No `retries:` here: a wrong sha256, a refused pickle or weights that do not fit fail the same way on every try;
    # only the download itself is tried again (models.network.download_pretrained).
    localrule: True
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=model_mem_mb,
    params:
        model=model_settings,
    script:
        "../scripts/fetch_checkpoint.py"
