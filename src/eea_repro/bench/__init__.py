"""Benchmarks of the heavy stages on random-weight models, run by ``python -m eea_repro.bench`` (``run``: the whole
run, its tables and command line; ``common``: presets, random models and inputs, timing, peak memory, the bare
forward), one module per benchmark: ``engine`` (1, metric engine vs bare forward), ``naive`` (2, engine vs the
published scripts' way), ``finetune`` (3, batched EEA fine-tuning vs the one-image loop), ``dry_run`` (4,
``snakemake -n`` at paper scale), ``maps`` (5, map throughput), ``kernels`` (6, CPU kernel options), ``overhead`` (7,
job start-up and what variant sharing skipped), ``numerics`` (8, portable vs native), ``tie_rules`` (9, NEG and INS
under the other tie rule); and ``gpu_check``, the one command that proves the GPU path (device against CPU
tests, the CI config on both, the paper models' rates and the cost estimate)."""
