"""Snakemake wrapper: pretrain an explainer of another model's architecture against an explained model (Fig. 9)."""
from eea_repro.workflow.logs import job_context
from eea_repro.explainer.stage import pretrain_explainer

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    pretrain_explainer(p.model, p.explainer, p.scoring, p.image_root, i.train, i.val, i.classes, i.checkpoint,
                       o.explainer, o.history, variant=snakemake.wildcards.variant, resume_dir=p.resume_dir,
                       seed=p.seed, device=p.device, explainer_model_cfg=p.explainer_model,
                       explainer_checkpoint=i.explainer_checkpoint)
