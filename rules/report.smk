# The final Jinja2 HTML report: one self-contained page (figures embedded) that is the DAG's sink.


rule report:
    input:
        tables=expand("results/tables/{model}_{variant}.html", model=MODELS, variant=VARIANTS),
        summaries=all_tables(),
        per_image=expand("results/tables/{model}_{variant}.per_image.csv", model=MODELS, variant=VARIANTS),
        figures=all_figures(),
        checkpoints=expand("results/checkpoints/{model}.json", model=MODELS),
        explainers=expand("results/explainers/{model}/{variant}.json", model=MODELS, variant=VARIANTS),
        template=workflow_file("report/template.html.j2"),
        style=workflow_file("report/style.css"),
        section_templates=sorted(glob.glob(workflow_file("report/sections/*.html.j2"))),
        section_data=list(report_sections().values()),
    output:
        report("results/report/index.html", caption="../report/captions/report.rst", category="The reproduction report"),
    log:
        "logs/report/report.log",
    conda:
        "../envs/report.yaml"
    params:
        config=config,
        method_labels=METHOD_LABELS,
        controls=CONTROL_METHODS,
        tables=report_tables(),
        figures=report_figures(),
        checkpoints=report_checkpoints(),
        explainers=report_explainers(),
        benchmarks_dir="benchmarks",
        sections=report_sections(),
    script:
        "../scripts/make_report.py"
