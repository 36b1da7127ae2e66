"""Snakemake wrapper: the sanity-check summary the report reads (figures, per-level mean ρ with CI per method)."""
from eea_repro.workflow.io import read_classes
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.figures import write_sanity_summary

with job_context(snakemake):
    p = snakemake.params
    n_classes = len(read_classes(snakemake.input.classes))
    write_sanity_summary(p.similarities, p.figures, p.labels, p.method_labels, p.layers, p.sanity, p.confidence,
                         n_classes, snakemake.output[0])
