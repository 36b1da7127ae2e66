# Qualitative grid in the style of the paper's Fig. 1: images x methods, maps overlaid.


rule qualitative_grid:
    conda:
        "../envs/report.yaml"
    input:
        unpack(figure_inputs),
    output:
        png="results/figures/qualitative_{model}_{variant}.png",
        pdf="results/figures/qualitative_{model}_{variant}.pdf",
    params:
        model=model_settings,
        figures=config["figures"],
        image_root=image_root,
        seed=config["seed"],
        title=table_caption,
    log:
        "logs/figures/qualitative_{model}_{variant}.log",
    script:
        "../scripts/make_qualitative_grid.py"
