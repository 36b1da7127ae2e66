"""Snakemake wrapper: the sanity-check summary the report reads (figures, per-level mean ρ with CI per method)."""
from eea_repro.logs import job_context
from eea_repro.sanity import write_sanity_summary

with job_context(snakemake):
    p = snakemake.params
    write_sanity_summary(p.similarities, p.figures, p.labels, p.layers, p.sanity, p.confidence, snakemake.output[0])
