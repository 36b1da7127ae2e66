"""Snakemake wrapper: generate the embedded procedural dataset."""
from pathlib import Path

from eea_repro.logs import log_to
from eea_repro.stages import make_embedded_dataset

with log_to(snakemake.log[0]):
    make_embedded_dataset(Path(snakemake.output.classes).parent, snakemake.params.settings, snakemake.params.seed)
