"""Snakemake wrapper: every method's Spearman, SSIM and HOG curves over randomization levels."""
from eea_repro.logs import job_context
from eea_repro.sanity import make_methods_curves

with job_context(snakemake):
    make_methods_curves(snakemake.input[0], snakemake.params.label, snakemake.params.confidence, snakemake.output)
