"""Snakemake wrapper: EEA (per-image fine-tuned) or pEEA maps for one shard of evaluated images."""
from eea_repro.logs import job_context
from eea_repro.stages import make_eea_maps

with job_context(snakemake):
    p, i, o, w = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards
    make_eea_maps(w.method, p.model, p.explainer, p.finetune, p.scoring, i.checkpoint, i.explainer, p.image_root,
                  i.images, i.classes, o.maps, o.selection, variant=w.variant, shard_range=p.shard_range,
                  device=p.device)
