"""Snakemake wrapper: pretrain the EEA explainer (pEEA) of one explained model, for one variant or for all."""
from pathlib import Path

from eea_repro.workflow.logs import job_context
from eea_repro.explainer.stage import pretrain_variant_explainers

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    explainers, histories = dict(zip(p.variants, o.explainers)), dict(zip(p.variants, o.histories))
    resume_dirs = {variant: str(Path(path).with_suffix(".resume")) for variant, path in explainers.items()}
    pretrain_variant_explainers(p.model, p.explainer, p.scoring, p.image_root, i.train, i.val, i.classes,
                                i.checkpoint, explainers, histories, resume_dirs, seed=p.seed, device=p.device)
