"""Snakemake wrapper: pretrain an EEA explainer against the permuted-label model ('target' variant, main settings)."""
from eea_repro.workflow.logs import job_context
from eea_repro.explainer.stage import pretrain_explainer

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    pretrain_explainer(p.model, p.explainer, p.scoring, p.image_root, i.train, i.val, i.classes, i.checkpoint,
                       o.explainer, o.history, variant="target", resume_dir=p.resume_dir, seed=p.seed, device=p.device)
