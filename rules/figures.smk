# Qualitative grid in the style of the paper's Figs. 1 and 11-16: images x methods, maps overlaid, the object outlined
# (embedded data); and the index of every paper-style figure for the report (Figs. 9 and 10: mixed.smk, two_object.smk).


rule qualitative_grid:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/figures/qualitative_{model}_{variant}.png",
            caption="../report/captions/qualitative.rst",
            category="Qualitative figures",
            labels={"model": "{model}", "variant": "{variant}"},
        ),
        pdf="results/figures/qualitative_{model}_{variant}.pdf",
    log:
        "logs/figures/qualitative_{model}_{variant}.log",
    conda:
        "../envs/report.yaml"
    params:
        model=model_settings,
        figures=config["figures"],
        image_root=image_root,
        seed=config["seed"],
        title=table_caption,
        mask_dir=mask_dir_of("test"),
    script:
        "../scripts/make_qualitative_grid.py"


rule paper_figures_summary:
    input:
        figures=lambda wildcards: all_figures(),
        tables=lambda wildcards: ["results/tables/mixed_architectures.html"] if MIXED_PAIRS else [],
        two_object_maps=lambda wildcards: [entry["eea_maps"] for entry in multi_class_figures() if "eea_maps" in entry],
    output:
        "results/figures/paper_figures.json",
    log:
        "logs/figures/paper_figures.log",
    conda:
        "../envs/report.yaml"
    params:
        single_class=report_figures(),
        mixed=mixed_figure,
        multi_class=multi_class_figures,
    script:
        "../scripts/make_paper_figures_summary.py"
