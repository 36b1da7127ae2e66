"""Snakemake wrapper: a data-randomization box plot of one model (Fig. 6: EEA only; or every method)."""
from eea_repro.sanity.data_randomization_figures import make_spearman_boxplot
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    make_spearman_boxplot(snakemake.input[0], p.label, p.method_labels, list(snakemake.output),
                          eea_only=snakemake.wildcards.methods == "eea")
