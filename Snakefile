# Regenerates the artifacts of "Explainer-Explained Architecture" (EEA / LTX, arXiv 2310.16584) for vision models.
# Default: the embedded dataset on a CPU (config.yaml). Paper scale: --configfile config/paper.yaml (see README.md).

from pathlib import Path

from snakemake.utils import min_version

min_version("9.19")

# This repository's folder: the Snakefile's own, also when another workflow uses this one as a module (where
# workflow.basedir is the other workflow's folder).
WORKFLOW_ROOT = Path(str(workflow.current_basedir))


# A --configfile replaces config.yaml (config/paper.yaml, config/ci.yaml or your own), it is not a patch on top of it:
# merging would leak the embedded models' settings into the paper's models. Keys it leaves out take the schema's
# defaults (config/README.md).
if not workflow.overwrite_configfiles:

    configfile: WORKFLOW_ROOT / "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/checkpoints.smk"
include: "rules/explainer.smk"
include: "rules/maps.smk"
include: "rules/metrics.smk"
include: "rules/figures.smk"
include: "rules/mixed.smk"
include: "rules/two_object.smk"
include: "rules/localisation.smk"
include: "rules/sanity.smk"
include: "rules/data_randomization.smk"
include: "rules/claims.smk"
include: "rules/report.smk"
include: "rules/bench.smk"


rule all:
    default_target: True
    input:
        "results/report/index.html",
        all_sanity_checks(),
