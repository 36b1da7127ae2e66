"""Snakemake wrapper: per-image ADP, PIC, POS, NEG, DEL, INS of one map shard."""
from eea_repro.logs import job_context
from eea_repro.stages import evaluate_maps

with job_context(snakemake):
    p, i, w = snakemake.params, snakemake.input, snakemake.wildcards
    evaluate_maps(p.model, p.metrics, i.checkpoint, i.maps, p.image_root, i.images, i.classes,
                  snakemake.output[0], variant=w.variant, shard_range=p.shard_range, seed=p.seed, device=p.device,
                  precision=p.precision)
