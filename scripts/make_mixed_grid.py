"""Snakemake wrapper: the grid of images x explainer/explained pairs (Fig. 9)."""
from eea_repro.workflow.logs import job_context
from eea_repro.figures.mixed import make_mixed_grid

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    make_mixed_grid(p.pairs, p.display_model, p.figures, p.image_root, i.labels, i.classes, [o.png, o.pdf],
                    title=p.title, seed=p.seed, mask_dir=p.mask_dir)
