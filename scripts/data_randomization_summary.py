"""Snakemake wrapper: the data-randomization summary (JSON) that feeds the report section."""
from eea_repro.sanity.data_randomization_figures import write_data_randomization_summary
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    write_data_randomization_summary(p.models, p.settings, p.source_split, p.method_labels, snakemake.output[0])
