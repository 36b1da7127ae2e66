"""Snakemake wrapper: per-image pointing game and mask AP of every method's maps for one model, per variant."""
from eea_repro.localisation.scores import localisation_scores
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    map_files = {variant: getattr(snakemake.input, variant) for variant in p.variants}
    localisation_scores(map_files, p.mask_dir, p.size, dict(zip(p.variants, snakemake.output)), device=p.device)
