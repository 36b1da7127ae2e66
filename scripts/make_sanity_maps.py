"""Snakemake wrapper: every method's maps of the sanity images on each randomized model of one job."""
from eea_repro.workflow.logs import job_context
from eea_repro.sanity.parameter import make_sanity_maps

with job_context(snakemake):
    p, i, o = snakemake.params, snakemake.input, snakemake.output
    maps = iter(o.maps)
    make_sanity_maps(p.settings, p.methods, p.model, p.sanity, p.explainer, p.finetune, p.scoring, i.checkpoint,
                     i.explainer, p.image_root, i.images, i.explainer_train, i.explainer_val, i.classes,
                     {setting: {method: next(maps) for method in p.methods} for setting in p.settings},
                     dict(zip(p.settings, o.predictions)), dict(zip(p.settings, p.resume)), seed=p.seed,
                     training_seed=p.training_seed, device=p.device, precision=p.precision,
                     batch_size=p.batch_size, reference_maps=p.reference_maps)
