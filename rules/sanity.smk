# Parameter-randomization sanity checks (paper Section 3.1, Figs. 2-5; Adebayo et al. 2018). For each explained model,
# run (a mode, cascading or independent, on one layer granularity of sanity.layers) and level x, every configured
# method explains the sanity images (sanity.n_images, ground-truth class) on the model randomized at that level; EEA is
# re-fitted against it (sanity.eea_refit). Level 1 is the original model, shared by every run ("original"). Each
# level's maps are compared per image with level 1's.

rule sanity_similarity:
    conda:
        "../envs/report.yaml"
    input:
        unpack(sanity_level_inputs(lambda wildcards: sanity_methods_of(wildcards.model), predictions=True)),
    output:
        "results/sanity/{model}/{run}.similarity.csv",
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        input_size=lambda wildcards: config["models"][wildcards.model]["input_size"],
    log:
        "logs/sanity/similarity_{model}_{run}.log",
    script:
        "../scripts/sanity_similarity.py"


rule sanity_eea_curve:
    conda:
        "../envs/report.yaml"
    input:
        "results/sanity/{model}/{run}.similarity.csv",
    output:
        multiext("results/figures/sanity_{model}_{run}_eea", ".png", ".pdf"),
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        confidence=config["tables"]["confidence"],
    log:
        "logs/sanity/eea_curve_{model}_{run}.log",
    script:
        "../scripts/make_sanity_eea_curve.py"


rule sanity_methods_curves:
    conda:
        "../envs/report.yaml"
    input:
        "results/sanity/{model}/{run}.similarity.csv",
    output:
        multiext("results/figures/sanity_{model}_{run}_methods", ".png", ".pdf"),
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        confidence=config["tables"]["confidence"],
    log:
        "logs/sanity/methods_curves_{model}_{run}.log",
    script:
        "../scripts/make_sanity_methods_curves.py"


rule sanity_grid:
    conda:
        "../envs/report.yaml"
    input:
        unpack(sanity_level_inputs(lambda wildcards: ["eea"])),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        multiext("results/figures/sanity_{model}_{run}_grid", ".png", ".pdf"),
    wildcard_constraints:
        run=RUN_PATTERN,
    params:
        model=model_settings,
        sanity=SANITY,
        image_root=image_root,
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: EEA under {run_label(wildcards.run)} "
        "(x = 1: original model)",
    log:
        "logs/sanity/grid_{model}_{run}.log",
    script:
        "../scripts/make_sanity_grid.py"


rule sanity_summary:
    conda:
        "../envs/report.yaml"
    input:
        similarities=[f"results/sanity/{m}/{name}.similarity.csv" for m in MODELS for name in SANITY_RUNS[m]],
        figures=[f for f in sanity_outputs() if f != SANITY_SUMMARY],
        classes=PLAN.classes_file,
    output:
        SANITY_SUMMARY,
    params:
        similarities={
            f"{m}/{name}": f"results/sanity/{m}/{name}.similarity.csv" for m in MODELS for name in SANITY_RUNS[m]
        },
        figures={f"{m}/{name}": sanity_figures(m, name) for m in MODELS for name in SANITY_RUNS[m]},
        labels={m: config["models"][m]["label"] for m in MODELS},
        layers={f"{m}/{name}": run_layer_count(m, name) for m in MODELS for name in SANITY_RUNS[m]},
        sanity=SANITY,
        confidence=config["tables"]["confidence"],
    log:
        "logs/sanity/summary.log",
    script:
        "../scripts/sanity_summary.py"


for sanity_family in FAMILIES:

    rule:
        name:
            f"sanity_maps_{sanity_family}"
        conda:
            "../envs/torch.yaml"
        input:
            checkpoint=checkpoint_of,
            explainer=f"results/explainers/{{model}}/{REFERENCE_VARIANT}.safetensors",
            images=PLAN.split_label_file("test"),
            explainer_train=PLAN.split_label_file("explainer_train"),
            explainer_val=PLAN.split_label_file("explainer_val"),
            classes=PLAN.classes_file,
        output:
            maps=expand("results/sanity/{{model}}/{{setting}}/{method}.npz", method=sanity_methods(sanity_family)),
            predictions="results/sanity/{model}/{setting}/predictions.csv",
        wildcard_constraints:
            model=one_of(family_models(sanity_family)),
            setting=rf"original|{RUN_PATTERN}-\d+",
        params:
            **explain_images_params(sanity_family, sanity_methods(sanity_family)),
        threads: 1
        resources:
            gpu=gpu_request,
        log:
            "logs/sanity/maps_{model}_{setting}.log",
        benchmark:
            "benchmarks/sanity/maps_{model}_{setting}.tsv"
        script:
            "../scripts/make_sanity_maps.py"
