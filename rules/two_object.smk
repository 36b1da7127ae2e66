# Paper Fig. 10, class-specific maps on two-object images (embedded data only: ImageNet has no such split). One job per
# explained model computes every configured method's maps for both classes of every two-object image; the files
# results/two_object/{model}/{method}.npz (format: eea_repro.two_object) also feed the class-specific pointing game.


rule two_object_figure:
    conda:
        "../envs/report.yaml"
    input:
        maps=lambda wildcards: expand(
            "results/two_object/{model}/{method}.npz", model=wildcards.model, method=methods_of(wildcards.model)
        ),
        labels=PLAN.split_label_file("two_object"),
        classes=PLAN.classes_file,
    output:
        png="results/figures/two_object_{model}.png",
        pdf="results/figures/two_object_{model}.pdf",
    params:
        model=model_settings,
        figures=config["figures"],
        image_root=image_root,
        mask_dir=mask_dir_of("two_object"),
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: each two-object image explained "
        "for each of its classes",
    log:
        "logs/figures/two_object_{model}.log",
    script:
        "../scripts/make_two_object_figure.py"


for two_object_family in sorted({config["models"][m]["family"] for m in MODELS}) if PLAN.kind == "embedded" else []:

    rule:
        name:
            f"two_object_maps_{two_object_family}"
        conda:
            "../envs/torch.yaml"
        input:
            unpack(two_object_explainer),
            checkpoint=checkpoint_of,
            images=PLAN.split_label_file("two_object"),
            classes=PLAN.classes_file,
        output:
            expand("results/two_object/{{model}}/{method}.npz", method=config["methods"][two_object_family]),
        wildcard_constraints:
            model=one_of(family_models(two_object_family)),
        params:
            **explain_images_params(two_object_family),
        threads: 1
        resources:
            gpu=gpu_request,
        log:
            "logs/two_object/maps_{model}.log",
        benchmark:
            "benchmarks/two_object/maps_{model}.tsv"
        script:
            "../scripts/make_two_object_maps.py"
