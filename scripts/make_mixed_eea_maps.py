"""Snakemake wrapper: EEA maps of one shard from an explainer of another model's architecture (Fig. 9)."""
from eea_repro.workflow.logs import job_context
from eea_repro.explainer.stage import make_eea_maps

with job_context(snakemake):
    p, i, o, w = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards
    make_eea_maps(p.model, p.explainer, p.finetune, p.scoring, i.checkpoint, {w.variant: i.explainer}, p.image_root,
                  i.images, i.classes, {"eea": {w.variant: o.maps}}, {w.variant: o.selection},
                  shard_range=p.shard_range, device=p.device, explainer_model_cfg=p.explainer_model,
                  stored_method=p.method, model_key=w.model, timing_csv=p.timing)
