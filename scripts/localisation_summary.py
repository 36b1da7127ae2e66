"""Snakemake wrapper: every model's localisation table in one JSON for the report."""
from eea_repro.localisation.tables import localisation_summary
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    localisation_summary(dict(zip(p.models, snakemake.input)), p.labels, p.masks_source, snakemake.output[0])
