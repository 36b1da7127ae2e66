"""Snakemake wrapper: benchmark the heavy stages on this config's models (random weights)."""
from eea_repro.bench.run import run_benchmarks, save_results
from eea_repro.workflow.logs import job_context

with job_context(snakemake):
    p = snakemake.params
    results = run_benchmarks(p.models, p.num_classes, device=p.device, precision=p.precision,
                             batch_size=p.batch_size, methods=p.methods, compile=p.compile,
                             finetune_steps=max(2, p.finetune_steps), chunk_size=p.chunk_size,
                             workflow_dir=p.workflow_dir)
    save_results(results, snakemake.output.json, snakemake.output.text)
