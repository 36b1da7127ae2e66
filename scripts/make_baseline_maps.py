"""Snakemake wrapper: maps of every registry method of a model for one shard of evaluated images, every variant."""
from eea_repro.workflow.logs import job_context
from eea_repro.methods.stage import make_baseline_maps

with job_context(snakemake):
    p, i, w = snakemake.params, snakemake.input, snakemake.wildcards
    paths = iter(snakemake.output)
    out_maps = {method: {variant: next(paths) for variant in p.variants} for method in p.methods}
    make_baseline_maps(p.methods, p.model, i.checkpoint, p.image_root, i.images, i.classes, out_maps,
                       shard_range=p.shard_range, seed=p.seed, device=p.device, precision=p.precision,
                       batch_size=p.batch_size, model_key=w.model, timing_csv=p.timing)
