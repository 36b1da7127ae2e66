"""Snakemake wrapper: render the HTML report."""
from eea_repro.workflow.logs import job_context
from eea_repro.report.page import build_report

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    build_report(template=i.template, style=i.style, config=p.config, method_labels=p.method_labels,
                 controls=p.controls, tables=p.tables, figures=p.figures, checkpoints=p.checkpoints,
                 explainers=p.explainers, benchmarks_dir=p.benchmarks_dir, sections=p.sections,
                 output=snakemake.output[0])
