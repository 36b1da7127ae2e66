"""Snakemake wrapper: EEA's maps and overlays per randomization level (paper Fig. 3 or Fig. 5)."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.parameter import level_inputs, make_sanity_grid

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    make_sanity_grid(level_inputs(i), "eea", p.model, p.sanity, p.image_root, i.images, i.classes, snakemake.output,
                     title=p.title, seed=p.seed)
