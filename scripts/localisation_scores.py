"""Snakemake wrapper: per-image pointing game and mask AP of every method's maps for one model and variant."""
from eea_repro.localisation import localisation_scores
from eea_repro.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    localisation_scores(snakemake.input.maps, p.mask_dir, p.size, snakemake.output[0], device=p.device)
