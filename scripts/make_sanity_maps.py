"""Snakemake wrapper: every method's maps of the sanity images on one randomized model (or the original one)."""
from eea_repro.logs import job_context
from eea_repro.sanity import make_sanity_maps

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    make_sanity_maps(snakemake.wildcards.setting, p.methods, p.model, p.sanity, p.explainer, p.finetune,
                     p.scoring, i.checkpoint, i.explainer, p.image_root, i.images, i.explainer_train,
                     i.explainer_val, i.classes, dict(zip(p.methods, snakemake.output.maps)),
                     snakemake.output.predictions, seed=p.seed, device=p.device, precision=p.precision,
                     batch_size=p.batch_size)
