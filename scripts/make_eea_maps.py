"""Snakemake wrapper: EEA (per-image fine-tuned) and / or pEEA maps for one shard of evaluated images."""
from eea_repro.logs import job_context
from eea_repro.stages import make_eea_maps

with job_context(snakemake):
    p, i, o, w = snakemake.params, snakemake.input, snakemake.output, snakemake.wildcards
    out_maps = {method: getattr(o, method) for method in ("eea", "peea") if hasattr(o, method)}
    make_eea_maps(p.model, p.explainer, p.finetune, p.scoring, i.checkpoint, i.explainer, p.image_root, i.images,
                  i.classes, out_maps, getattr(o, "selection", None), variant=w.variant, shard_range=p.shard_range,
                  device=p.device, model_key=w.model, timing_csv=p.timing)
