# Paper Fig. 10, class-specific maps on two-object images (embedded data only: ImageNet has no such split). One job per
# explained model computes every configured method's maps for both classes of every two-object image; the files
# results/two_object/{model}/{method}.npz (format: eea_repro.localisation.two_object) also feed the class-specific pointing game.


rule two_object_figure:
    input:
        maps=lambda wildcards: expand(
            "results/two_object/{model}/{method}.npz", model=wildcards.model, method=methods_of(wildcards.model)
        ),
        labels=PLAN.split_label_file("two_object"),
        classes=PLAN.classes_file,
    output:
        png=report(
            "results/figures/two_object_{model}.png",
            caption="../report/captions/two_object.rst",
            category="Multiple-class images",
            labels={"model": "{model}"},
        ),
        pdf="results/figures/two_object_{model}.pdf",
    log:
        "logs/figures/two_object_{model}.log",
    conda:
        "../envs/report.yaml"
    params:
        model=model_settings,
        figures=config["figures"],
        image_root=image_root,
        mask_dir=mask_dir_of("two_object"),
        seed=config["seed"],
        title=lambda wildcards: f"{config['models'][wildcards.model]['label']}: each two-object image explained "
        "for each of its classes",
    script:
        "../scripts/make_two_object_figure.py"


# A seed replicate (config `replicates`) re-makes the seeded methods' maps (EEA and pEEA from its explainer, the random
# control from its seed); localisation (rules/localisation.smk) scores them with the run's other maps.
for two_object_family in sorted({config["models"][m]["family"] for m in MODELS}) if PLAN.kind == "embedded" else []:
    for two_object_replicate in [0, *(["{replicate}"] if REPLICATES else [])]:
        two_object_methods = [
            m for m in config["methods"][two_object_family] if not two_object_replicate or m in REPLICATED_METHODS
        ]

        rule:
            name:
                f"two_object_maps_{two_object_family}{'_replicate' if two_object_replicate else ''}"
            input:
                unpack(two_object_explainer),
                checkpoint=checkpoint_of,
                images=PLAN.split_label_file("two_object"),
                classes=PLAN.classes_file,
            output:
                [
                    in_replicate(f"results/two_object/{{model}}/{method}.npz", two_object_replicate)
                    for method in two_object_methods
                ],
            log:
                f"logs/two_object/maps_{{model}}{'_replicate-{replicate}' if two_object_replicate else ''}.log",
            benchmark:
                f"benchmarks/two_object/maps_{{model}}{'_replicate-{replicate}' if two_object_replicate else ''}.tsv"
            wildcard_constraints:
                model=one_of(family_models(two_object_family)),
            conda:
                "../envs/torch.yaml"
            threads: 1
            resources:
                gpu=gpu_request,
                mem_mb=model_mem_mb,
            params:
                **{
                    **explain_images_params(two_object_family, two_object_methods),
                    **({"seed": replicate_training_seed} if two_object_replicate else {}),
                },
            script:
                "../scripts/make_two_object_maps.py"
