"""Benchmark 9, ``tie_rules`` (on a finished run, not in the default list): the run's maps scored again under the other
tie rule, and per method how far NEG and INS move, next to the table's CI half-width."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd


def tie_rule_shift(run_dir: str | Path, config: dict) -> list[dict]:
    """Score a finished run's maps again under the tie rule it did not use (same engine, same images), and per
    (model, variant, method) report the mean NEG and INS under both and the run's table CI half-width."""
    from eea_repro.data.plan import plan_from_config
    from eea_repro.metrics.stage import evaluate_shard
    from eea_repro.metrics.tables import read_per_image

    run_dir = Path(run_dir)
    ran = config["metrics"]["tie_break"]
    other = "raster" if ran == "random" else "random"
    plan = plan_from_config(config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eea-ties-") as scratch:
        for model, model_cfg in config["models"].items():
            methods = config["methods"][model_cfg["family"]]
            shards = []
            for shard in plan.shards:
                out = Path(scratch) / f"{model}_{shard}.csv"
                files = [(v, str(run_dir / f"results/maps/{model}/{v}/{m}/shard-{shard}.npz"))
                         for m in methods for v in config["variants"]]
                evaluate_shard(model_cfg, {**config["metrics"], "tie_break": other},
                               run_dir / f"results/checkpoints/{model}.safetensors", files,
                               run_dir / plan.image_root, run_dir / plan.split_label_file("test"),
                               run_dir / plan.classes_file, out, shard_range=plan.shard_range(shard),
                               seed=config["seed"], device="cpu", precision=config["precision"])
                shards.append(out)
            for variant in config["variants"]:
                table = pd.read_csv(run_dir / f"results/tables/{model}_{variant}.csv").set_index("method")
                rescored = read_per_image(shards, variant, methods).groupby("method", sort=False)[["NEG", "INS"]]
                for method, means in rescored.mean().iterrows():
                    row = {"model": model, "variant": variant, "method": method, "ran": ran}
                    for metric in ("NEG", "INS"):
                        row[f"{metric}_{ran}"] = float(table.loc[method, f"{metric}_mean"])
                        row[f"{metric}_{other}"] = float(means[metric])
                        row[f"{metric}_ci_half"] = float(table.loc[method, f"{metric}_ci_high"]
                                                         - table.loc[method, f"{metric}_ci_low"]) / 2
                    rows.append(row)
    return rows
