"""Snakemake wrapper: EEA's Spearman curve over randomization levels (paper Fig. 2 or Fig. 4)."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.figures import make_eea_curve

with job_context(snakemake):
    make_eea_curve(snakemake.input[0], snakemake.params.label, snakemake.params.confidence, snakemake.output)
