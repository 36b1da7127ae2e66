"""Snakemake wrapper: the report's index of paper-style figures (captions, PNG paths, the mixed-pair table)."""
from eea_repro.workflow.logs import job_context
from eea_repro.figures.mixed import write_paper_figures_summary

with job_context(snakemake):
    p = snakemake.params
    write_paper_figures_summary(snakemake.output[0], single_class=p.single_class, mixed=p.mixed,
                                multi_class=p.multi_class)
