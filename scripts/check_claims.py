"""Snakemake wrapper: the appendix's claims checked against this run's evidence (results/claims.*)."""
from eea_repro.claims.render import write_claims
from eea_repro.claims.verdicts import Settings
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    csv, json_file, html = snakemake.output
    table = write_claims(snakemake.params.evidence, Settings.from_config(snakemake.params.config), csv, json_file,
                         html)
    print(table["verdict"].value_counts().to_string())
