"""Snakemake wrapper: train the explained architecture on permuted labels until it fits them (data randomization)."""
from eea_repro.sanity.data_randomization import train_permuted_label_model
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    train_permuted_label_model(snakemake.wildcards.model, p.model, p.settings, p.data_randomization, p.image_root,
                               i.train, i.test, i.classes, i.init or None, o.checkpoint, o.record, resume=p.resume,
                               seed=p.seed, device=p.device)
