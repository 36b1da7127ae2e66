"""Snakemake wrapper: per-image ADP, PIC, POS, NEG, DEL, INS of one map shard."""
from eea_repro.logs import log_to
from eea_repro.stages import evaluate_maps

with log_to(snakemake.log[0]):
    p, i, w = snakemake.params, snakemake.input, snakemake.wildcards
    evaluate_maps(p.model, p.metrics, i.checkpoint, i.maps, p.image_root, i.images, i.classes,
                  snakemake.output[0], variant=w.variant, shard_range=p.shard_range, device=p.device,
                  precision=p.precision)
