"""Snakemake wrapper: pretrain the EEA explainer (pEEA) for one explained model and variant."""
from eea_repro.logs import job_context
from eea_repro.stages import pretrain_explainer

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    pretrain_explainer(p.model, p.explainer, p.scoring, p.image_root, i.train, i.val, i.classes, i.checkpoint,
                       o.explainer, o.history, variant=snakemake.wildcards.variant, resume_dir=p.resume_dir,
                       seed=p.seed, device=p.device)
