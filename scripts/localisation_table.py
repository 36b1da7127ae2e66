"""Snakemake wrapper: one localisation table (CSV, HTML, JSON for the report) per explained model."""
from eea_repro.localisation.tables import localisation_table
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    per_variant = dict(zip(p.variants, i.per_image))
    localisation_table(per_variant, i.two_object[0] if i.two_object else None, p.caption, p.tables, p.seed,
                       p.method_labels, o.csv, o.html, o.json)
