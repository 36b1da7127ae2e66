"""Snakemake wrapper: train a small explained classifier on the embedded dataset."""
from eea_repro.workflow.logs import job_context
from eea_repro.models.stage import train_explained_model

with job_context(snakemake):
    p = snakemake.params
    train_explained_model(p.model, p.image_root, snakemake.input.train, snakemake.input.val, snakemake.input.test,
                          snakemake.input.classes,
                          snakemake.output.checkpoint, snakemake.output.record, resume=p.resume, seed=p.seed,
                          device=p.device)
