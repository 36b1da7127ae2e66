"""Snakemake wrapper: fetch pretrained weights through timm, or import a local weights file."""
from eea_repro.logs import log_to
from eea_repro.stages import fetch_checkpoint

with log_to(snakemake.log[0]):
    fetch_checkpoint(snakemake.params.model, snakemake.input.classes, snakemake.output.checkpoint,
                     snakemake.output.record)
