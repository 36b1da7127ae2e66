"""Snakemake wrapper: per-image ADP, PIC, POS, NEG, DEL, INS of every map shard of one model and shard."""
from eea_repro.workflow.logs import job_context
from eea_repro.metrics.stage import evaluate_shard

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    evaluate_shard(p.model, p.metrics, i.checkpoint, [tuple(pair) for pair in p.map_files], p.image_root, i.images,
                   i.classes, snakemake.output[0], shard_range=p.shard_range, seed=p.seed, device=p.device,
                   precision=p.precision, model_key=snakemake.wildcards.model,
                   timing_csv=p.timing)
