"""Snakemake wrapper: the qualitative grid (images x methods) of one explained model and variant."""
from eea_repro.workflow.logs import job_context
from eea_repro.figures.qualitative import make_qualitative_grid

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    make_qualitative_grid(i.maps, p.model, p.figures, p.image_root, i.labels, i.classes, [o.png, o.pdf],
                          title=p.title, seed=p.seed, mask_dir=p.mask_dir)
