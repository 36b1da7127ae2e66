"""Snakemake wrapper: every method's maps for both classes of each two-object image, for one explained model (Fig. 10)."""
from eea_repro.workflow.logs import job_context
from eea_repro.localisation.two_object import make_two_object_maps

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    make_two_object_maps(p.methods, p.model, p.explainer, p.finetune, p.scoring, i.checkpoint,
                         i.get("explainer"), p.image_root, i.images, i.classes, list(snakemake.output), seed=p.seed,
                         device=p.device, precision=p.precision, batch_size=p.batch_size)
