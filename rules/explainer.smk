# EEA explainer pretraining (pEEA): one explainer per (explained model, variant), best epoch by validation POS AUC.


rule pretrain_explainer:
    priority: 180  # two-thread jobs first, while both cores are free (see README, Speed)
    conda:
        "../envs/torch.yaml"
    input:
        checkpoint=checkpoint_of,
        train=PLAN.split_label_file("explainer_train"),
        val=PLAN.split_label_file("explainer_val"),
        classes=PLAN.classes_file,
    output:
        explainer=protected("results/explainers/{model}/{variant}.safetensors"),
        history="results/explainers/{model}/{variant}.json",
    params:
        model=model_settings,
        explainer=config["explainer"],
        scoring=SCORING,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume_dir="results/explainers/{model}/{variant}.resume",
    threads: 2
    resources:
        gpu=gpu_request,
    log:
        "logs/explainer/{model}_{variant}.log",
    benchmark:
        "benchmarks/explainer/{model}_{variant}.tsv"
    script:
        "../scripts/pretrain_explainer.py"
