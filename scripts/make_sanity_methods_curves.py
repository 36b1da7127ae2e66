"""Snakemake wrapper: every method's Spearman, SSIM and HOG curves over randomization levels."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.figures import make_methods_curves

with job_context(snakemake):
    p = snakemake.params
    make_methods_curves(snakemake.input[0], p.label, p.confidence, p.method_labels, snakemake.output)
