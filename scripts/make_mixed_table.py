"""Snakemake wrapper: the metric table of the explainer/explained pairs (Fig. 9)."""
from eea_repro.workflow.logs import job_context
from eea_repro.figures.mixed import make_mixed_table

with job_context(snakemake):
    p, o = snakemake.params, snakemake.output
    make_mixed_table(p.pairs, p.variant, p.tables, p.seed, p.caption, o.csv, o.tex, o.html, o.per_image)
