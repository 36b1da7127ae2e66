"""Snakemake wrapper: write the label files of every split (explainer-training images disjoint from evaluated ones)."""
from eea_repro.data.folder import make_folder_split_lists
from eea_repro.workflow.logs import job_context
from eea_repro.data.plan import EMBEDDED_ROOT, SPLITS_DIR
from eea_repro.data.splits import make_embedded_split_lists, make_imagenet_split_lists

with job_context(snakemake):
    p, o = snakemake.params, snakemake.output
    if p.kind == "embedded":
        make_embedded_split_lists(EMBEDDED_ROOT, SPLITS_DIR, p.explainer, p.seed)
    elif p.kind == "folder":
        make_folder_split_lists(p.folder, p.explainer, SPLITS_DIR, o.classes, o.skipped, o.skipped_summary,
                                eval_count=p.eval_count, masks_dir=getattr(o, "masks", None),
                                on_bad_image=p.on_bad_image, seed=p.seed,
                                threads=snakemake.threads)
    else:
        make_imagenet_split_lists(snakemake.input.labels, p.image_dir, SPLITS_DIR, p.counts, p.seed, o.classes,
                                  o.skipped, o.skipped_summary, disjoint=p.explainer["disjoint_from_eval"],
                                  on_bad_image=p.on_bad_image, threads=snakemake.threads)
