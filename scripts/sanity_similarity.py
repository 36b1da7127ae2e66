"""Snakemake wrapper: per-image similarity of each level's maps to the original maps, every method of one model."""
from eea_repro.logs import job_context
from eea_repro.sanity import level_inputs, sanity_similarity

with job_context(snakemake):
    sanity_similarity(level_inputs(snakemake.input), snakemake.wildcards.mode, snakemake.params.input_size,
                      snakemake.output[0])
