# Parameter-randomization sanity checks (paper Section 3.1, Figs. 2-5; Adebayo et al. 2018). For each explained model,
# run (a mode of sanity.modes on one layer granularity of sanity.layers) and level x, every configured method
# explains the sanity images (sanity.n_images, ground-truth class) on the model randomized at that level; EEA is
# re-fitted against it (sanity.eea_refit). Level 1 is the original model, shared by every run ("original"). Each
# level's maps are compared per image with level 1's; efficient MPRT compares level 1 with the fully randomized
# network only, by the maps' entropy.


rule sanity_similarity:
    input:
        unpack(sanity_level_inputs(lambda wildcards: sanity_methods_of(wildcards.model), predictions=True)),
    output:
        "results/sanity/{model}/{run}.similarity.csv",
    log:
        "logs/sanity/similarity_{model}_{run}.log",
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=similarity_mem_mb,
    params:
        input_size=lambda wildcards: config["models"][wildcards.model]["input_size"],
    script:
        "../scripts/sanity_similarity.py"


rule sanity_eea_curve:
    input:
        "results/sanity/{model}/{run}.similarity.csv",
    output:
        report(
            "results/figures/sanity_{model}_{run}_eea.png",
            caption="../report/captions/sanity.rst",
            category="Sanity checks",
            labels={"model": "{model}", "run": "{run}", "figure": "eea"},
        ),
        "results/figures/sanity_{model}_{run}_eea.pdf",
    log:
        "logs/sanity/eea_curve_{model}_{run}.log",
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../envs/report.yaml"
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        confidence=config["tables"]["confidence"],
    script:
        "../scripts/make_sanity_eea_curve.py"


rule sanity_methods_curves:
    input:
        "results/sanity/{model}/{run}.similarity.csv",
    output:
        report(
            "results/figures/sanity_{model}_{run}_methods.png",
            caption="../report/captions/sanity.rst",
            category="Sanity checks",
            labels={"model": "{model}", "run": "{run}", "figure": "methods"},
        ),
        "results/figures/sanity_{model}_{run}_methods.pdf",
    log:
        "logs/sanity/methods_curves_{model}_{run}.log",
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../envs/report.yaml"
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        confidence=config["tables"]["confidence"],
        method_labels=METHOD_LABELS,
    script:
        "../scripts/make_sanity_methods_curves.py"


rule sanity_emprt_boxplot:
    input:
        "results/sanity/{model}/{run}.similarity.csv",
    output:
        report(
            "results/figures/sanity_{model}_{run}_emprt.png",
            caption="../report/captions/sanity.rst",
            category="Sanity checks",
            labels={"model": "{model}", "run": "{run}", "figure": "emprt"},
        ),
        "results/figures/sanity_{model}_{run}_emprt.pdf",
    log:
        "logs/sanity/emprt_boxplot_{model}_{run}.log",
    wildcard_constraints:
        run=r"efficient(?:-(attention|block|stage))?",
    conda:
        "../envs/report.yaml"
    params:
        label=lambda wildcards: config["models"][wildcards.model]["label"],
        method_labels=METHOD_LABELS,
    script:
        "../scripts/make_sanity_emprt_boxplot.py"


rule sanity_grid:
    input:
        unpack(sanity_level_inputs(lambda wildcards: ["eea"])),
        images=PLAN.split_label_file("test"),
        classes=PLAN.classes_file,
    output:
        report(
            "results/figures/sanity_{model}_{run}_grid.png",
            caption="../report/captions/sanity.rst",
            category="Sanity checks",
            labels={"model": "{model}", "run": "{run}", "figure": "grid"},
        ),
        "results/figures/sanity_{model}_{run}_grid.pdf",
    log:
        "logs/sanity/grid_{model}_{run}.log",
    wildcard_constraints:
        run=RUN_PATTERN,
    conda:
        "../envs/report.yaml"
    params:
        model=model_settings,
        sanity=SANITY,
        image_root=image_root,
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: EEA under {run_label(wildcards.run)} "
        "(x = 1: original model)",
    script:
        "../scripts/make_sanity_grid.py"


rule sanity_summary:
    input:
        similarities=[f"results/sanity/{m}/{name}.similarity.csv" for m in MODELS for name in SANITY_RUNS[m]],
        figures=[f for f in sanity_outputs() if f != SANITY_SUMMARY],
        classes=PLAN.classes_file,
    output:
        SANITY_SUMMARY,
    log:
        "logs/sanity/summary.log",
    conda:
        "../envs/report.yaml"
    params:
        similarities={
            f"{m}/{name}": f"results/sanity/{m}/{name}.similarity.csv" for m in MODELS for name in SANITY_RUNS[m]
        },
        figures={f"{m}/{name}": sanity_figures(m, name) for m in MODELS for name in SANITY_RUNS[m]},
        labels={m: config["models"][m]["label"] for m in MODELS},
        method_labels=METHOD_LABELS,
        layers={f"{m}/{name}": run_layer_count(m, name) for m in MODELS for name in SANITY_RUNS[m]},
        sanity=SANITY,
        confidence=config["tables"]["confidence"],
    script:
        "../scripts/sanity_summary.py"


# One rule per job (its files are known when the workflow is read): sanity.settings_per_job randomized models of one
# model per job, so that a job's imports, model and images serve several of them. A seed replicate (config
# `replicates`) re-makes the seeded methods' maps (EEA re-fitted, pEEA, the random control) with its own training seed
# on the same images and randomized models, under results/replicate-<r>/sanity/.
for sanity_model in MODELS:
    sanity_family = config["models"][sanity_model]["family"]
    sanity_model_jobs = sanity_jobs(sanity_model)
    for sanity_replicate in [0, *(REPLICATES if sanity_replicated_methods(sanity_family) else [])]:
        sanity_job_methods = (
            sanity_replicated_methods(sanity_family) if sanity_replicate else sanity_methods(sanity_family)
        )
        sanity_suffix = f"_replicate-{sanity_replicate}" if sanity_replicate else ""
        sanity_rule_suffix = f"_replicate_{sanity_replicate}" if sanity_replicate else ""
        for sanity_index, sanity_job in enumerate(sanity_model_jobs):
            sanity_label = f"{sanity_job_label(sanity_model_jobs, sanity_index)}{sanity_suffix}"
            sanity_references = sanity_reference_maps(sanity_model, sanity_job, sanity_job_methods, sanity_replicate)

            rule:
                name:
                    f"sanity_maps_{sanity_model}_{sanity_index + 1}{sanity_rule_suffix}"
                input:
                    checkpoint=f"results/checkpoints/{sanity_model}.safetensors",
                    explainer=in_replicate(
                        f"results/explainers/{sanity_model}/{REFERENCE_VARIANT}.safetensors", sanity_replicate
                    ),
                    images=PLAN.split_label_file("test"),
                    explainer_train=PLAN.split_label_file("explainer_train"),
                    explainer_val=PLAN.split_label_file("explainer_val"),
                    classes=PLAN.classes_file,
                    reference=[path for paths in sanity_references.values() for path in paths],
                output:
                    # setting by setting, each with every method's maps in sanity_methods order
                    maps=[
                        in_replicate(f"results/sanity/{sanity_model}/{setting}/{method}.npz", sanity_replicate)
                        for setting in sanity_job
                        for method in sanity_job_methods
                    ],
                    # the randomized models' predictions: the run's own (a replicate's models are the same)
                    predictions=[
                        f"results/sanity/{sanity_model}/{setting}/predictions.csv"
                        for setting in (sanity_job if not sanity_replicate else [])
                    ],
                log:
                    f"logs/sanity/maps_{sanity_model}_{sanity_label}.log",
                benchmark:
                    f"benchmarks/sanity/maps_{sanity_model}_{sanity_label}.tsv"
                conda:
                    "../envs/torch.yaml"
                threads: 1
                resources:
                    gpu=gpu_request,
                    mem_mb=model_mem_mb_of(sanity_model),
                params:
                    **{
                        **explain_images_params(sanity_family, sanity_job_methods),
                        "model": config["models"][sanity_model],
                    },
                    training_seed=replicate_seed(config["seed"], sanity_replicate),
                    settings=sanity_job,
                    reference_maps=sanity_references,
                    # a finished setting waits here until its whole job is done (a killed job resumes from it)
                    resume=[
                        in_replicate(f"results/sanity/{sanity_model}/{setting}.resume", sanity_replicate)
                        for setting in sanity_job
                    ],
                script:
                    "../scripts/make_sanity_maps.py"


use rule sanity_similarity as sanity_similarity_replicate with:
    input:
        unpack(sanity_level_inputs(lambda wildcards: sanity_methods_of(wildcards.model), predictions=True)),
    output:
        in_replicate("results/sanity/{model}/{run}.similarity.csv", "{replicate}"),
    log:
        "logs/sanity/similarity_{model}_{run}_replicate-{replicate}.log",
