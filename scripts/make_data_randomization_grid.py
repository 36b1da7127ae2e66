"""Snakemake wrapper: Figs. 7 and 8, the first sanity images with EEA's map of each model overlaid (one column each)."""
from eea_repro.sanity.data_randomization import make_randomization_comparison
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    make_randomization_comparison(dict(zip(p.headers, i.maps)), "eea", p.model, p.sanity, p.image_root, i.images,
                                  i.classes, list(snakemake.output), title=p.title, seed=p.seed)
