"""Paper-scale cost estimate: GPU-hours per stage from measured throughputs.

Kept free of torch so the report can build an estimate from a finished run's benchmark files. The stage model is the
workflow's own: every method's maps and every metric shard are made once per variant ('target', 'predicted'); EEA
maps are ``finetune_steps`` fine-tuning image-steps per image (an upper bound: the early stop ends many images
sooner); one explainer is pretrained per variant for ``pretrain_epochs`` epochs over ``pretrain_images`` images, plus
a POS-AUC validation (10 perturbed forwards, half of the metric engine's 20) over ``pretrain_val_images`` per epoch.
Each seed replicate beyond the first (config ``replicates``) repeats the seeded stages: pretraining, EEA fine-tuning
and the metrics of the seeded methods (EEA, pEEA, the random control).
"""

from __future__ import annotations

import argparse

import pandas as pd

from eea_repro.workflow.names import EEA_LABELS, EEA_METHODS

COLUMNS = ["model", "stage", "method", "throughput", "unit", "work", "gpu_hours"]

# Measured on one NVIDIA H200 (torch 2.11, random weights, fp32), images / s unless named otherwise.
H200_FP32 = {
    "ViT-B/16": {
        "maps": {"raw_attention": 1023, "rollout": 1002, "gae": 493, "attention_gradcam": 965,
                 "transformer_attribution": 164, "partial_lrp": 751, "full_lrp": 181},
        "metrics": 63,
        "metrics_bf16": 398,
        "finetune": 1000 / 14.7,  # image-steps / s (14.7 ms per image-step, chunk 32)
        "evaluated_methods": 11,  # the paper preset's ViT methods: 7 baselines, EEA, pEEA, random, all-ones
    },
    "ResNet-101": {
        "maps": {"gradcam": 3462, "gradcam_pp": 3313, "scorecam": 2.4, "ablationcam": 500, "layercam": 3537,
                 "liftcam": 3380, "integrated_gradients": 37.6, "fullgrad": 604},
        "metrics": 233,
        "metrics_bf16": 327,
        "finetune": 1000 / 15.3,
        "evaluated_methods": 12,
    },
}


def paper_cost_estimate(
    throughputs: dict,
    n_images: int = 50_000,
    *,
    variants: int = 2,
    finetune_steps: int = 25,
    pretrain_images: int = 6_000,
    pretrain_val_images: int = 1_000,
    pretrain_epochs: int = 30,
    replicates: int = 1,
) -> pd.DataFrame:
    """GPU-hours per (model, stage, method) for ``n_images`` evaluated images, one row per stage plus a total.

    ``throughputs`` maps a model label to ``{"maps": {method: images/s}, "finetune": image-steps/s,
    "metrics": images/s}`` and optionally ``"pretrain"`` (training images/s; default: the fine-tuning rate, whose
    steps also score 10 perturbed inputs, so the estimate errs high) and ``"evaluated_methods"`` (how many map sets
    the metrics score; default: the baselines given plus EEA and pEEA). ``replicates`` > 1 adds one row per model for
    the other replicates' seeded stages.
    """
    rows = []
    for model, rates in throughputs.items():
        maps = dict(rates.get("maps", {}))
        for method, rate in maps.items():
            rows.append(_row(model, "maps", method, rate, "images/s", n_images * variants))
        if rates.get("finetune"):
            rows.append(_row(model, "EEA fine-tuning", EEA_LABELS["eea"], rates["finetune"], "image-steps/s",
                             n_images * variants * finetune_steps))
        if rates.get("metrics"):
            evaluated = rates.get("evaluated_methods", len(maps) + 2)
            rows.append(_row(model, "metrics", f"{evaluated} methods", rates["metrics"], "images/s",
                             n_images * variants * evaluated))
        training_rate = rates.get("pretrain") or rates.get("finetune")
        if training_rate and rates.get("metrics"):
            row = _row(model, "explainer pretraining", EEA_LABELS["peea"], training_rate, "images/s",
                       pretrain_images * pretrain_epochs * variants)
            row["gpu_hours"] += pretrain_val_images * pretrain_epochs * variants / (2 * rates["metrics"]) / 3600
            rows.append(row)
        if replicates > 1:
            rows.append(_replicates_row(model, rows, replicates, n_images * variants))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    totals = frame.groupby("model", sort=False)["gpu_hours"].sum()
    total_rows = pd.DataFrame({"model": totals.index, "stage": "total", "method": "", "gpu_hours": totals.values})
    return pd.concat([frame, total_rows], ignore_index=True).reindex(columns=COLUMNS)


SEEDED_METRIC_METHODS = 3  # EEA, pEEA and the random control: the maps a seed replicate scores again


def _replicates_row(model: str, rows: list[dict], replicates: int, evaluated_images: int) -> dict:
    """The seeded stages of ``replicates`` - 1 more seeds: pretraining and fine-tuning again, and the metrics of the
    seeded methods (a share of the metrics row)."""
    hours = 0.0
    for row in (row for row in rows if row["model"] == model):
        if row["stage"] in ("EEA fine-tuning", "explainer pretraining"):
            hours += row["gpu_hours"]
        elif row["stage"] == "metrics":
            hours += row["gpu_hours"] * SEEDED_METRIC_METHODS * evaluated_images / row["work"]
    extra = replicates - 1
    return {"model": model, "stage": "seed replicates", "method": f"{extra} more seeds", "throughput": float("nan"),
            "unit": "", "work": extra, "gpu_hours": extra * hours}


def _row(model: str, stage: str, method: str, rate: float, unit: str, work: int) -> dict:
    return {"model": model, "stage": stage, "method": method, "throughput": float(rate), "unit": unit,
            "work": int(work), "gpu_hours": work / float(rate) / 3600}


def throughputs_from_run(method_costs: pd.DataFrame, pretrain_seconds: dict[str, float], config: dict,
                         controls: set[str]) -> dict:
    """Throughputs implied by a finished run's benchmark files (job start-up included), per model label.

    ``method_costs`` is :func:`eea_repro.report.page.method_costs` (seconds per image per model and method);
    ``pretrain_seconds`` maps a model key to the mean wall time of one explainer pretraining job; ``controls`` are the
    control methods.
    """
    steps = max(1, int(config["finetune"]["steps"]))
    not_timed = set(controls) | set(EEA_METHODS)  # as in the bench: EEA has its own rows, controls cost nothing
    explainer = config["explainer"]
    throughputs = {}
    for model, costs in method_costs.groupby("model", sort=False):
        if model not in config["models"]:
            continue
        family_methods = config["methods"][config["models"][model]["family"]]
        per_method = costs[costs["method"].isin(family_methods)].set_index("method")  # no mixed-architecture maps
        maps = {m: 1 / s for m, s in per_method["maps_s_per_image"].items() if m not in not_timed and s > 0}
        rates = {"maps": maps, "evaluated_methods": len(per_method)}
        if "eea" in per_method.index and per_method.loc["eea", "maps_s_per_image"] > 0:
            rates["finetune"] = steps / per_method.loc["eea", "maps_s_per_image"]
        metric_seconds = per_method["metrics_s_per_image"].mean()
        if metric_seconds > 0:
            rates["metrics"] = 1 / metric_seconds
        if pretrain_seconds.get(model):
            rates["pretrain"] = explainer["train_count"] * explainer["epochs"] / pretrain_seconds[model]
        throughputs[config["models"][model]["label"]] = rates
    return throughputs


def run_cost_estimate(method_costs: pd.DataFrame, runtimes: pd.DataFrame, config: dict, controls: set[str],
                      n_images: int = 50_000) -> pd.DataFrame:
    """:func:`paper_cost_estimate` from a finished run's own benchmark files (``runtimes`` as
    :func:`eea_repro.report.page.rule_runtimes` reads them): this run's models on this machine, scaled to ``n_images``."""
    jobs = runtimes[runtimes["stage"] == "explainer"].set_index("job")["seconds"]
    pretrain_seconds = {}
    for model in config["models"]:
        names = [f"{model}_{variant}" for variant in config["variants"] if f"{model}_{variant}" in jobs.index]
        if names:
            pretrain_seconds[model] = float(jobs[names].mean())
    return paper_cost_estimate(throughputs_from_run(method_costs, pretrain_seconds, config, controls), n_images)


def markdown_table(estimate: pd.DataFrame) -> str:
    """The estimate as a Markdown table (docs/benchmarks.md's)."""
    lines = ["| model | stage | method | throughput | GPU-hours |", "|---|---|---|---:|---:|"]
    for row in estimate.itertuples():
        if row.stage == "total":
            lines.append(f"| **{row.model}** | **total** | | | **{row.gpu_hours:.1f}** |")
        elif row.stage == "seed replicates":
            lines.append(f"| {row.model} | {row.stage} | {row.method} | the rows above | {row.gpu_hours:.2f} |")
        else:
            lines.append(f"| {row.model} | {row.stage} | {row.method} | {row.throughput:,.1f} {row.unit} | "
                         f"{row.gpu_hours:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the paper-scale cost estimate from the H200 figures.")
    parser.add_argument("--images", type=int, default=50_000, help="evaluated images (default 50,000)")
    parser.add_argument("--bf16-metrics", action="store_true", help="use the bf16 metric-engine throughput")
    parser.add_argument("--replicates", type=int, default=1,
                        help="seed replicates (config `replicates`; the paper preset runs 3)")
    args = parser.parse_args(argv)
    rates = {model: {**r, "metrics": r["metrics_bf16"] if args.bf16_metrics else r["metrics"]}
             for model, r in H200_FP32.items()}
    print(markdown_table(paper_cost_estimate(rates, args.images, replicates=args.replicates)))


if __name__ == "__main__":
    main()
