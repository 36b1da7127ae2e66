"""Snakemake wrapper: one metric table (CSV, LaTeX, HTML) with bootstrap confidence intervals."""
from eea_repro.logs import job_context
from eea_repro.stages import make_table

with job_context(snakemake):
    o = snakemake.output
    make_table(snakemake.input.per_image, snakemake.params.tables, snakemake.params.seed, snakemake.params.caption,
               o.csv, o.tex, o.html, o.per_image)
