"""The sanity checks (``sanity.smk``, ``data_randomization.smk``): parameter randomization's layers and randomized
models (``randomization``), the maps and similarities on them (``parameter``), the runs and settings it makes
(``runs``), the similarity measures (``similarity``), its curves and box plots (``figures``), and data randomization
with its figures (``data_randomization``, ``data_randomization_figures``)."""
