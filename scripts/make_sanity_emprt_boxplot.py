"""Snakemake wrapper: efficient MPRT's per-image scores, one box per method."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.figures import make_emprt_boxplot

with job_context(snakemake):
    p = snakemake.params
    make_emprt_boxplot(snakemake.input[0], p.label, p.method_labels, snakemake.output)
