"""Snakemake wrapper: one metric table (CSV, LaTeX, HTML) with bootstrap confidence intervals."""
from eea_repro.workflow.logs import job_context
from eea_repro.metrics.tables import make_table

with job_context(snakemake):
    o = snakemake.output
    p = snakemake.params
    make_table(snakemake.input.per_image, snakemake.wildcards.variant, p.methods, p.tables, p.seed, p.caption, p.method_labels,
               o.csv, o.tex, o.html, o.per_image, replaced_by=snakemake.input.get("replaced_by", []))
