"""Snakemake wrapper: fetch pretrained weights through timm, or import a local weights file."""
from eea_repro.workflow.logs import job_context
from eea_repro.models.stage import fetch_checkpoint

with job_context(snakemake):
    fetch_checkpoint(snakemake.params.model, snakemake.input.classes, snakemake.output.checkpoint,
                     snakemake.output.record)
