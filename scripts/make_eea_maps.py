"""Snakemake wrapper: EEA (per-image fine-tuned) and / or pEEA maps of one shard of evaluated images, every variant."""
from eea_repro.workflow.logs import job_context
from eea_repro.explainer.stage import make_eea_maps

with job_context(snakemake):
    p, i, o, w = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards
    maps = iter(o.maps)
    out_maps = {method: {variant: next(maps) for variant in p.variants} for method in p.methods}
    out_selection = dict(zip(p.variants, o.selection)) if hasattr(o, "selection") else None
    make_eea_maps(p.model, p.explainer, p.finetune, p.scoring, i.checkpoint, dict(zip(p.variants, i.explainers)),
                  p.image_root, i.images, i.classes, out_maps, out_selection, shard_range=p.shard_range,
                  device=p.device, model_key=w.model, timing_csv=p.timing)
