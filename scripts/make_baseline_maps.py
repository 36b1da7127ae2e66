"""Snakemake wrapper: maps of one registry method for one shard of evaluated images, every variant at once."""
from eea_repro.logs import job_context
from eea_repro.stages import make_baseline_maps

with job_context(snakemake):
    p, i, w = snakemake.params, snakemake.input, snakemake.wildcards
    make_baseline_maps(w.method, p.model, i.checkpoint, p.image_root, i.images, i.classes,
                       dict(zip(p.variants, snakemake.output)), shard_range=p.shard_range, seed=p.seed, device=p.device,
                       precision=p.precision, batch_size=p.batch_size)
