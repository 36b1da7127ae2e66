"""Snakemake wrapper: write the label files of every split (explainer-training images disjoint from evaluated ones)."""
from pathlib import Path

from eea_repro.logs import job_context
from eea_repro.plan import EMBEDDED_ROOT, SPLITS_DIR
from eea_repro.stages import make_embedded_split_lists, make_imagenet_split_lists

with job_context(snakemake):
    if snakemake.params.kind == "embedded":
        make_embedded_split_lists(EMBEDDED_ROOT, SPLITS_DIR, snakemake.params.explainer, snakemake.params.seed)
    else:
        p, o = snakemake.params, snakemake.output
        make_imagenet_split_lists(snakemake.input.labels, p.image_dir, SPLITS_DIR, p.counts, p.seed, o.classes,
                                  o.skipped, o.skipped_summary, disjoint=p.explainer["disjoint_from_eval"],
                                  on_bad_image=p.on_bad_image, threads=snakemake.threads)
