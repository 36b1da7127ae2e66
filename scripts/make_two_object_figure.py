"""Snakemake wrapper: the class-specific maps of two-object images for one explained model (Fig. 10)."""
from eea_repro.workflow.logs import job_context
from eea_repro.figures.two_object import make_two_object_figure

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    make_two_object_figure(i.maps, p.model, p.figures, p.image_root, i.labels, i.classes, p.mask_dir, [o.png, o.pdf],
                           title=p.title, seed=p.seed)
