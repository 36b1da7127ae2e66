"""Snakemake wrapper: class-specific pointing game of every method on the two-object images of one model."""
from eea_repro.localisation.scores import two_object_scores
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    two_object_scores(i.maps, p.mask_dir, i.labels, p.size, snakemake.output[0])
