"""Snakemake wrapper: generate the embedded procedural dataset."""
from pathlib import Path

from eea_repro.workflow.logs import job_context
from eea_repro.data.synthetic import make_embedded_dataset

with job_context(snakemake):
    make_embedded_dataset(Path(snakemake.output.classes).parent, snakemake.params.settings, snakemake.params.seed,
                          workers=snakemake.threads)
