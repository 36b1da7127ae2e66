"""Snakemake wrapper: per-image similarity of original and permuted-label maps, every method of one model."""
from eea_repro.sanity.data_randomization import data_randomization_similarity
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i = snakemake.params, snakemake.input
    data_randomization_similarity(dict(zip(p.methods, i.original)), dict(zip(p.methods, i.permuted)), p.input_size,
                                  snakemake.output[0])
