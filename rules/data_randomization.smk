# Data-randomization sanity check (paper Section 3.2, Figs. 6-8). Each model of data_randomization.models is trained
# on labelled images with permuted labels until it fits them; an EEA explainer is pretrained against it with the main
# explainer settings; every configured method explains the sanity images (sanity.n_images, ground-truth class) on it;
# each map is compared (Spearman ρ per image) with the same method's map on the original model: the parameter
# randomization check's level 1 (rules/sanity.smk), the same images, classes and code.

DATA_RANDOMIZATION = config["data_randomization"]
DATA_RANDOMIZED_MODELS = list(DATA_RANDOMIZATION["models"])
# labelled images outside the evaluated set: the embedded train split, or ImageNet's explainer-training images
PERMUTED_SOURCE_SPLIT = "train" if PLAN.kind == "embedded" else "explainer_train"
DATA_RANDOMIZATION_SUMMARY = "results/data_randomization/summary.json"


# per model: figure name -> PNG (a PDF sits next to each); Fig. 8 (comparison) takes sanity.smk's last cascading level
DATA_RANDOMIZATION_FIGURES = {
    m: {"methods_box": f"results/figures/data_randomization_{m}_methods.png"}
    | (
        {
            "eea_box": f"results/figures/data_randomization_{m}_eea.png",
            "grid": f"results/figures/data_randomization_{m}_grid.png",
            "comparison": f"results/figures/randomization_comparison_{m}.png",
        }
        if "eea" in sanity_methods_of(m)
        else {}
    )
    for m in DATA_RANDOMIZED_MODELS
}
# per model and method: the maps of the sanity images on the permuted-label and on the original model (sanity.smk's
# level 1: the same images, classes and code)
PERMUTED_LABEL_MAPS = {
    m: {method: f"results/data_randomization/{m}/maps/{method}.npz" for method in sanity_methods_of(m)}
    for m in DATA_RANDOMIZED_MODELS
}
ORIGINAL_MAPS = {
    m: {method: sanity_maps(m, "cascading", 1, method) for method in sanity_methods_of(m)}
    for m in DATA_RANDOMIZED_MODELS
}
DATA_RANDOMIZATION_SECTIONS = {"data_randomization": DATA_RANDOMIZATION_SUMMARY} if DATA_RANDOMIZED_MODELS else {}


rule permuted_label_model:
    input:
        train=PLAN.split_label_file(PERMUTED_SOURCE_SPLIT),
        test=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
        init=lambda wildcards: checkpoint_of(wildcards) if DATA_RANDOMIZATION["init"] == "checkpoint" else [],
    output:
        checkpoint=protected("results/data_randomization/{model}/model.safetensors"),
        record="results/data_randomization/{model}/model.json",
    log:
        "logs/data_randomization/train_{model}.log",
    benchmark:
        "benchmarks/data_randomization/train_{model}.tsv"
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
    priority: 190  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpu_request,
        mem_mb=training_mem_mb(
            lambda model: DATA_RANDOMIZATION["models"][model]["batch_size"], DATA_RANDOMIZATION["train_count"]
        ),
    params:
        model=model_settings,
        settings=lambda wildcards: DATA_RANDOMIZATION["models"][wildcards.model],
        data_randomization=DATA_RANDOMIZATION,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume="results/data_randomization/{model}/model.resume.pt",
    script:
        "../scripts/train_permuted_label_model.py"


rule permuted_label_explainer:
    input:
        checkpoint="results/data_randomization/{model}/model.safetensors",
        train=PLAN.split_label_file("explainer_train"),
        val=PLAN.split_label_file("explainer_val"),
        classes=PLAN.classes_file,
    output:
        explainer=protected("results/data_randomization/{model}/explainer.safetensors"),
        history="results/data_randomization/{model}/explainer.json",
    log:
        "logs/data_randomization/explainer_{model}.log",
    benchmark:
        "benchmarks/data_randomization/explainer_{model}.tsv"
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
    priority: 180  # two-thread jobs first, while both cores are free (see docs/speed.md)
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        model=model_settings,
        explainer=config["explainer"],
        scoring=SCORING,
        image_root=image_root,
        seed=config["seed"],
        device=config["device"],
        resume_dir="results/data_randomization/{model}/explainer.resume",
    script:
        "../scripts/pretrain_permuted_label_explainer.py"


# One rule per family, and one more for the seed replicates (config `replicates`): a replicate's twin is its own,
# so every method's maps on it are new; the sanity images stay the run's.
for data_randomization_family in sorted({config["models"][m]["family"] for m in DATA_RANDOMIZED_MODELS}):
    for data_randomization_replicate in [0, *(["{replicate}"] if REPLICATES else [])]:

        rule:
            name:
                f"permuted_label_maps_{data_randomization_family}"
                f"{'_replicate' if data_randomization_replicate else ''}"
            input:
                checkpoint=in_replicate(
                    "results/data_randomization/{model}/model.safetensors", data_randomization_replicate
                ),
                explainer=in_replicate(
                    "results/data_randomization/{model}/explainer.safetensors", data_randomization_replicate
                ),
                images=PLAN.split_label_file("test"),
                classes=PLAN.classes_file,
            output:
                [
                    in_replicate(
                        f"results/data_randomization/{{model}}/maps/{method}.npz", data_randomization_replicate
                    )
                    for method in sanity_methods(data_randomization_family)
                ],
            log:
                "logs/data_randomization/maps_{model}.log"
                if not data_randomization_replicate
                else "logs/data_randomization/maps_{model}_replicate-{replicate}.log",
            benchmark:
                "benchmarks/data_randomization/maps_{model}.tsv"
                if not data_randomization_replicate
                else "benchmarks/data_randomization/maps_{model}_replicate-{replicate}.tsv"
            wildcard_constraints:
                model=one_of(family_models(data_randomization_family, DATA_RANDOMIZED_MODELS)),
            conda:
                "../envs/torch.yaml"
            threads: 1
            resources:
                gpu=gpu_request,
                mem_mb=model_mem_mb,
            params:
                **explain_images_params(data_randomization_family, sanity_methods(data_randomization_family)),
                training_seed=replicate_training_seed if data_randomization_replicate else config["seed"],
            script:
                "../scripts/make_permuted_label_maps.py"


rule data_randomization_similarity:
    input:
        original=lambda wildcards: list(ORIGINAL_MAPS[wildcards.model].values()),
        permuted=lambda wildcards: list(PERMUTED_LABEL_MAPS[wildcards.model].values()),
    output:
        "results/data_randomization/{model}/similarity.csv",
    log:
        "logs/data_randomization/similarity_{model}.log",
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=similarity_mem_mb,
    params:
        methods=lambda wildcards: sanity_methods_of(wildcards.model),
        input_size=lambda wildcards: config["models"][wildcards.model]["input_size"],
    script:
        "../scripts/data_randomization_similarity.py"


rule data_randomization_boxplot:
    input:
        "results/data_randomization/{model}/similarity.csv",
    output:
        report(
            "results/figures/data_randomization_{model}_{methods}.png",
            caption="../report/captions/data_randomization.rst",
            category="Data randomization",
            labels={"model": "{model}", "figure": "{methods}"},
        ),
        "results/figures/data_randomization_{model}_{methods}.pdf",
    log:
        "logs/data_randomization/boxplot_{model}_{methods}.log",
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
        methods="eea|methods",
    conda:
        "../envs/report.yaml"
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        method_labels=METHOD_LABELS,
    script:
        "../scripts/make_data_randomization_boxplot.py"


rule data_randomization_grid:
    input:
        maps=lambda wildcards: [
            ORIGINAL_MAPS[wildcards.model]["eea"],
            PERMUTED_LABEL_MAPS[wildcards.model]["eea"],
        ],
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        report(
            "results/figures/data_randomization_{model}_grid.png",
            caption="../report/captions/data_randomization.rst",
            category="Data randomization",
            labels={"model": "{model}", "figure": "grid"},
        ),
        "results/figures/data_randomization_{model}_grid.pdf",
    log:
        "logs/data_randomization/grid_{model}.log",
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
    conda:
        "../envs/report.yaml"
    params:
        headers=["EEA", "EEA, random labels"],
        model=model_settings,
        sanity=SANITY,
        image_root=image_root,
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: EEA on the original and on the "
        "permuted-label model",
    script:
        "../scripts/make_data_randomization_grid.py"


rule randomization_comparison:
    input:
        maps=lambda wildcards: [
            ORIGINAL_MAPS[wildcards.model]["eea"],
            fully_randomized_maps(wildcards.model, "eea"),
            PERMUTED_LABEL_MAPS[wildcards.model]["eea"],
        ],
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        report(
            "results/figures/randomization_comparison_{model}.png",
            caption="../report/captions/data_randomization.rst",
            category="Data randomization",
            labels={"model": "{model}", "figure": "comparison"},
        ),
        "results/figures/randomization_comparison_{model}.pdf",
    log:
        "logs/data_randomization/comparison_{model}.log",
    wildcard_constraints:
        model=one_of(DATA_RANDOMIZED_MODELS),
    conda:
        "../envs/report.yaml"
    params:
        headers=["EEA", "Parameter randomization", "Data randomization"],
        model=model_settings,
        sanity=SANITY,
        image_root=image_root,
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: EEA under parameter and data "
        "randomization",
    script:
        "../scripts/make_data_randomization_grid.py"


rule data_randomization_summary:
    input:
        records=expand("results/data_randomization/{model}/model.json", model=DATA_RANDOMIZED_MODELS),
        explainers=expand("results/data_randomization/{model}/explainer.json", model=DATA_RANDOMIZED_MODELS),
        similarities=expand("results/data_randomization/{model}/similarity.csv", model=DATA_RANDOMIZED_MODELS),
        figures=[f for m in DATA_RANDOMIZED_MODELS for f in DATA_RANDOMIZATION_FIGURES[m].values()],
    output:
        DATA_RANDOMIZATION_SUMMARY,
    log:
        "logs/data_randomization/summary.log",
    conda:
        "../envs/report.yaml"
    params:
        models={
            m: {
                "label": config["models"][m]["label"],
                "record": f"results/data_randomization/{m}/model.json",
                "explainer": f"results/data_randomization/{m}/explainer.json",
                "similarity": f"results/data_randomization/{m}/similarity.csv",
                "figures": DATA_RANDOMIZATION_FIGURES[m],
            }
            for m in DATA_RANDOMIZED_MODELS
        },
        settings=DATA_RANDOMIZATION,
        source_split=PERMUTED_SOURCE_SPLIT,
        method_labels=METHOD_LABELS,
    script:
        "../scripts/data_randomization_summary.py"


# Seed replicates (config `replicates`): a permuted-label twin per seed (its own subset, permutation and training),
# its explainer, its maps (above), compared with the same seed's maps on the original model.
use rule permuted_label_model as permuted_label_model_replicate with:
    output:
        checkpoint=protected(in_replicate("results/data_randomization/{model}/model.safetensors", "{replicate}")),
        record=in_replicate("results/data_randomization/{model}/model.json", "{replicate}"),
    log:
        "logs/data_randomization/train_{model}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/data_randomization/train_{model}_replicate-{replicate}.tsv"
    params:
        seed=replicate_training_seed,
        resume=in_replicate("results/data_randomization/{model}/model.resume.pt", "{replicate}"),


use rule permuted_label_explainer as permuted_label_explainer_replicate with:
    input:
        checkpoint=in_replicate("results/data_randomization/{model}/model.safetensors", "{replicate}"),
        train=PLAN.split_label_file("explainer_train"),
        val=PLAN.split_label_file("explainer_val"),
        classes=PLAN.classes_file,
    output:
        explainer=protected(in_replicate("results/data_randomization/{model}/explainer.safetensors", "{replicate}")),
        history=in_replicate("results/data_randomization/{model}/explainer.json", "{replicate}"),
    log:
        "logs/data_randomization/explainer_{model}_replicate-{replicate}.log",
    benchmark:
        "benchmarks/data_randomization/explainer_{model}_replicate-{replicate}.tsv"
    params:
        seed=replicate_training_seed,
        resume_dir=in_replicate("results/data_randomization/{model}/explainer.resume", "{replicate}"),


use rule data_randomization_similarity as data_randomization_similarity_replicate with:
    input:
        original=lambda wildcards: [
            sanity_maps(wildcards.model, "cascading", 1, method, wildcards.replicate)
            for method in sanity_methods_of(wildcards.model)
        ],
        permuted=lambda wildcards: [
            in_replicate(path, wildcards.replicate) for path in PERMUTED_LABEL_MAPS[wildcards.model].values()
        ],
    output:
        in_replicate("results/data_randomization/{model}/similarity.csv", "{replicate}"),
    log:
        "logs/data_randomization/similarity_{model}_replicate-{replicate}.log",
