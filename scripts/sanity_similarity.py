"""Snakemake wrapper: per-image similarity of each level's maps to the original maps, every method of one model."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.parameter import level_inputs, sanity_similarity

with job_context(snakemake):
    predictions = {level: files[0] for level, files in level_inputs(snakemake.input, "predictions").items()}
    sanity_similarity(level_inputs(snakemake.input), predictions, snakemake.wildcards.run,
                      snakemake.params.input_size, snakemake.output[0])
