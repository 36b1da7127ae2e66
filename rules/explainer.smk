# EEA explainer pretraining (pEEA): one explainer per (explained model, variant), best epoch by validation POS AUC.
# explainer.variants_together: one job per model trains every variant's explainer (once, when both would train alike).


rule pretrain_explainer:
    input:
        checkpoint=checkpoint_of,
        train=PLAN.split_label_file("explainer_train"),
        val=PLAN.split_label_file("explainer_val"),
        classes=PLAN.classes_file,
    output:
        explainers=protected(explainer_job_files("results/explainers/{model}/{variant}.safetensors")),
        histories=explainer_job_files("results/explainers/{model}/{variant}.json"),
    log:
        f"logs/explainer/{{model}}_{EXPLAINER_JOB_VARIANTS}.log",
    benchmark:
        f"benchmarks/explainer/{{model}}_{EXPLAINER_JOB_VARIANTS}.tsv"
    priority: 180  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        variants=explainer_job_variants,
        model=model_settings,
        explainer=config["explainer"],
        scoring=SCORING,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/pretrain_explainer.py"


# Seed replicates (config `replicates`): the same pretraining with the replicate's seed, under results/replicate-<r>/.
use rule pretrain_explainer as pretrain_explainer_replicate with:
    output:
        explainers=protected(
            explainer_job_files(in_replicate("results/explainers/{model}/{variant}.safetensors", "{replicate}"))
        ),
        histories=explainer_job_files(in_replicate("results/explainers/{model}/{variant}.json", "{replicate}")),
    log:
        f"logs/explainer/{{model}}_{EXPLAINER_JOB_VARIANTS}_replicate-{{replicate}}.log",
    benchmark:
        f"benchmarks/explainer/{{model}}_{EXPLAINER_JOB_VARIANTS}_replicate-{{replicate}}.tsv"
    params:
        seed=replicate_training_seed,
