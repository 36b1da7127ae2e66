# Benchmarks of the heavy stages on this config's models with random weights (not part of `all`): `snakemake bench`
# writes every figure to results/bench/bench.json and the printed tables to results/bench/bench.txt.


rule bench:
    output:
        json="results/bench/bench.json",
        text="results/bench/bench.txt",
    log:
        "logs/bench/bench.log",
    benchmark:
        "benchmarks/bench/bench.tsv"
    conda:
        "../envs/torch.yaml"
    threads: lambda wildcards: workflow.cores  # every core; read only when the job runs (commands without --cores work)
    resources:
        gpu=gpu_request,
        mem_mb=model_mem_mb,
    params:
        models=config["models"],
        methods=config["methods"],
        num_classes=config["dataset"][config["dataset"]["kind"]]["n_classes"],
        device=config["device"],
        precision=config["precision"],
        batch_size=config["metrics"]["batch_size"],
        compile=config["metrics"]["compile"],
        finetune_steps=config["finetune"]["steps"],
        chunk_size=config["finetune"]["chunk_size"],
        workflow_dir=str(WORKFLOW_ROOT),
    script:
        "../scripts/run_bench.py"
