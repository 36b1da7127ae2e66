"""Snakemake wrapper: train a small explained classifier on the embedded dataset."""
from eea_repro.logs import log_to
from eea_repro.stages import train_explained_model

with log_to(snakemake.log[0]):
    p = snakemake.params
    train_explained_model(p.model, p.image_root, snakemake.input.train, snakemake.input.val, snakemake.input.classes,
                          snakemake.output.checkpoint, snakemake.output.record, resume=p.resume, seed=p.seed,
                          device=p.device)
