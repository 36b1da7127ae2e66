"""Snakemake wrapper: every method's maps of the sanity images on the permuted-label model."""
from eea_repro.sanity.data_randomization import make_permuted_label_maps
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    make_permuted_label_maps(p.methods, p.model, p.sanity, p.explainer, p.finetune, p.scoring, i.checkpoint,
                             i.explainer, p.image_root, i.images, i.classes, dict(zip(p.methods, snakemake.output)),
                             seed=p.seed, training_seed=p.training_seed, device=p.device, precision=p.precision,
                             batch_size=p.batch_size)
