"""Benchmarks of the heavy stages, each ratio measured side by side in one run: ``python -m eea_repro.bench``.

The whole run: which benchmarks run on which model, the figures a cost estimate needs, the printed tables and the
command line; the benchmarks themselves are the package's other modules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from eea_repro.bench.common import (ENGINE_INPUTS_PER_IMAGE, PRESET_FILES, default_workflow_dir, num_classes_of,
                                    preset_config, random_inputs, random_model)
from eea_repro.bench.dry_run import bench_dry_run
from eea_repro.bench.engine import bench_engine
from eea_repro.bench.finetune import bench_finetune
from eea_repro.bench.kernels import bench_kernels
from eea_repro.bench.maps import bench_maps
from eea_repro.bench.naive import NAIVE_FORWARDS_PER_IMAGE, bench_naive
from eea_repro.bench.numerics import bench_numerics
from eea_repro.bench.overhead import bench_job_start, run_sharing_and_overhead
from eea_repro.bench.tie_rules import tie_rule_shift
from eea_repro.methods import control_methods
from eea_repro.metrics.engine import PRECISIONS
from eea_repro.models.network import compile_model, resolve_device
from eea_repro.report.costs import paper_cost_estimate
from eea_repro.workflow.names import EEA_METHODS

BENCHMARKS = ("engine", "naive", "finetune", "dry_run", "maps", "kernels", "overhead", "numerics")


def run_benchmarks(models: dict[str, dict], num_classes: int, *, device: str = "auto", precision: str = "fp32",
                   batch_size: int = 256, benchmarks: tuple[str, ...] = BENCHMARKS, images: int = 64,
                   naive_images: int = 8, finetune_images: int = 32, finetune_loop_images: int = 4,
                   finetune_steps: int = 5, chunk_size: int = 32, map_images: int = 16,
                   methods: dict[str, list[str]] | None = None, compile: bool = False, repeats: int = 2,
                   workflow_dir: str | Path | None = None, dry_run_images: int = 50_000,
                   run_dir: str | Path | None = None, config: dict | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run the chosen benchmarks for every model; returns a JSON-ready dict (see :func:`format_results`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    unknown = set(benchmarks) - set(BENCHMARKS) - {"tie_rules"}
    if unknown:
        raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; choose from {(*BENCHMARKS, 'tie_rules')}")
    device = resolve_device(device)
    results = {"machine": machine_info(device), "settings": {
        "precision": precision, "batch_size": batch_size, "images": images, "naive_images": naive_images,
        "finetune_images": finetune_images, "finetune_loop_images": finetune_loop_images,
        "finetune_steps": finetune_steps, "chunk_size": chunk_size, "compile": compile}, "models": {}}
    for name, model_cfg in models.items():
        label = model_cfg.get("label", name)
        log(f"{label}: building the model")
        model = random_model(model_cfg, num_classes, device)
        entry = results["models"][name] = {"label": label}
        if methods and methods.get(model_cfg["family"]):
            entry["evaluated_methods"] = len(methods[model_cfg["family"]])  # map sets the metrics score
        if "engine" in benchmarks or "naive" in benchmarks:
            batch, maps, classes = random_inputs(model, images, num_classes, device)
        if "engine" in benchmarks:
            log(f"{label}: metric engine vs bare forward")
            entry["engine"] = {"eager": bench_engine(model, batch, maps, classes, batch_size=batch_size,
                                                     precision=precision, repeats=repeats)}
            if compile:
                entry["engine"]["compiled"] = bench_engine(compile_model(model, True), batch, maps, classes,
                                                           batch_size=batch_size, precision=precision,
                                                           repeats=repeats)
        if "naive" in benchmarks:
            log(f"{label}: metric engine vs naive metrics")
            count = min(naive_images, images)
            entry["naive"] = bench_naive(model, batch[:count], maps[:count], classes[:count], batch_size=batch_size,
                                         precision=precision, repeats=repeats)
        if "finetune" in benchmarks:
            log(f"{label}: batched fine-tuning vs the one-image loop")
            entry["finetune"] = bench_finetune(model_cfg, num_classes, device, images=finetune_images,
                                               loop_images=finetune_loop_images, steps=finetune_steps,
                                               chunk_size=chunk_size, metric_batch_size=batch_size)
        if "maps" in benchmarks:
            family_methods = (methods or {}).get(model_cfg["family"], [])
            chosen = [m for m in family_methods if m not in EEA_METHODS and m not in control_methods()]
            if chosen:
                log(f"{label}: map throughput of {len(chosen)} methods")
                map_batch, _, map_classes = random_inputs(model, map_images, num_classes, device, seed=2)
                entry["maps"] = bench_maps(model, chosen, map_batch, map_classes,
                                           batch_size=min(batch_size, map_images), precision=precision)
        if "kernels" in benchmarks and device.type == "cpu":
            log(f"{label}: CPU kernel options")
            entry["kernels"] = bench_kernels(model_cfg, num_classes, images=images, batch_size=batch_size,
                                             repeats=repeats)
        del model
    if "numerics" in benchmarks and device.type == "cpu":
        log("portable against native numerics")
        results["numerics"] = bench_numerics(models, num_classes, images=images, repeats=repeats)
    if "dry_run" in benchmarks:
        log(f"snakemake -n of the paper preset with {dry_run_images} images")
        results["dry_run"] = bench_dry_run(workflow_dir or default_workflow_dir(), dry_run_images)
    if "overhead" in benchmarks:
        log("job start-up")
        results["overhead"] = {"start": bench_job_start()}
        if run_dir is not None and (Path(run_dir) / "benchmarks").is_dir():
            results["overhead"]["run"] = run_sharing_and_overhead(Path(run_dir) / "benchmarks")
    if "tie_rules" in benchmarks:
        if run_dir is None or config is None:
            raise ValueError("the tie_rules benchmark reads a finished run: give --run-dir (and its preset)")
        log("NEG and INS under the other tie rule")
        results["tie_rules"] = tie_rule_shift(run_dir, config)
    throughputs = measured_throughputs(results)
    if throughputs:
        results["cost_estimate"] = paper_cost_estimate(throughputs).to_dict("records")
    return results


def measured_throughputs(results: dict) -> dict:
    """The figures :func:`paper_cost_estimate` needs, from this run's measurements."""
    throughputs = {}
    for entry in results["models"].values():
        rates = {}
        if "maps" in entry:
            rates["maps"] = entry["maps"]
        if "finetune" in entry:
            rates["finetune"] = entry["finetune"]["batched_image_steps_per_s"]
        if "engine" in entry:
            rates["metrics"] = entry["engine"]["eager"]["engine_images_per_s"]
            if "evaluated_methods" in entry:
                rates["evaluated_methods"] = entry["evaluated_methods"]
        if rates:
            throughputs[entry["label"]] = rates
    return throughputs


def machine_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        try:
            info["load_average"] = [round(load, 2) for load in os.getloadavg()]
        except OSError:
            pass
    return info


def format_results(results: dict) -> str:
    """A plain-text report: one table per benchmark, ratios next to their goals."""
    machine, settings = results["machine"], results["settings"]
    lines = [f"device {machine.get('gpu', machine['device'])}, torch {machine['torch']}, "
             f"{machine['threads']} threads, {settings['precision']}, batch {settings['batch_size']}"
             + (f", load {machine['load_average']}" if "load_average" in machine else ""), ""]
    models = results["models"].values()

    def table(title, header, rows):
        if rows:
            frame = pd.DataFrame(rows, columns=header)
            lines.extend([title, frame.to_string(index=False), ""])

    table("1. metric engine vs bare forward (inputs = images x 20 perturbation steps; goal >= 85 %)",
          ["model", "mode", "engine inputs/s", "forward inputs/s", "engine images/s", "engine / forward"],
          [[e["label"], mode, f"{r['engine_inputs_per_s']:.1f}", f"{r['forward_inputs_per_s']:.1f}",
            f"{r['engine_images_per_s']:.2f}", f"{100 * r['ratio']:.0f} %"]
           for e in models for mode, r in e.get("engine", {}).items()])
    table("2. metric engine vs naive metrics (one metric, one step, one image at a time; CPU goal >= 20x)\n"
          f"   forward-bound = bare forwards of the naive code ({NAIVE_FORWARDS_PER_IMAGE} per image at its batch) "
          f"over the engine's ({ENGINE_INPUTS_PER_IMAGE} per image at batch {settings['batch_size']}), the speed-up "
          "batching and shared inputs alone can give",
          ["model", "images", "engine images/s", "naive images/s", "speed-up", "forward-bound", "max |diff|",
           "agree"],
          [[e["label"], r["images"], f"{r['engine_images_per_s']:.2f}", f"{r['naive_images_per_s']:.3f}",
            f"{r['speedup']:.1f}x", f"{r['forward_bound_speedup']:.1f}x",
            f"{max(r['max_abs_difference'].values()):.2g}", "yes" if r["agree"] else "NO"]
           for e in models if (r := e.get("naive"))])
    table("3. batched EEA fine-tuning vs one-image loop, equal steps (GPU goal >= 30x), and vs a bare forward + "
          "backward of both models at the same batch (the work's limit)",
          ["model", "images", "steps", "chunk", "batched img-steps/s", "loop img-steps/s", "speed-up",
           "bare img-steps/s", "of bare", "ms / img-step", "peak MiB / image", "max |map diff|"],
          [[e["label"], r["images"], r["steps"], r["chunk_size"], f"{r['batched_image_steps_per_s']:.2f}",
            f"{r['loop_image_steps_per_s']:.2f}", f"{r['speedup']:.1f}x", f"{r['bare_image_steps_per_s']:.2f}",
            f"{100 * r['of_bare']:.0f} %", f"{r['batched_ms_per_image_step']:.1f}",
            "-" if r["peak_memory_per_image_mib"] is None else f"{r['peak_memory_per_image_mib']:.1f}",
            f"{r['max_abs_map_difference']:.1e}"]
           for e in models if (r := e.get("finetune"))])
    if "dry_run" in results:
        r = results["dry_run"]
        lines.extend([f"4. snakemake -n, paper preset, {r['images']:,} images: {r['seconds']:.1f} s, again in the "
                      f"same folder {r['seconds_again']:.1f} s ({r['jobs']} jobs)", ""])
    table("5. map throughput (images/s)", ["model", "method", "images/s"],
          [[e["label"], m, f"{rate:.2f}"] for e in models for m, rate in e.get("maps", {}).items()])
    kernel_rows = []
    for e in models:
        if r := e.get("kernels"):
            base = r["inputs_per_s"]["inference_mode, 1 thread"]
            kernel_rows += [[e["label"], option, f"{rate:.1f}", f"{rate / base:.2f}x"]
                            for option, rate in r["inputs_per_s"].items()]
            kernel_rows.append([e["label"], "torch.compile: the compile itself", f"{r['compile_seconds']:.1f} s", ""])
    table("6. CPU kernel options, fp32 forwards (inputs/s; ratio to inference_mode on 1 thread)",
          ["model", "option", "inputs/s", "ratio"], kernel_rows)
    if result := results.get("numerics"):
        rows = []
        for model, portable in result["seconds"]["portable"].items():
            native = result["seconds"]["native"][model]
            rows += [[model, what.removesuffix("_s").replace("_", " "), f"{1000 * native[what]:.0f}",
                      f"{1000 * portable[what]:.0f}", f"{portable[what] / native[what]:.2f}x"] for what in native]
        table(f"8. numerics, {result['images']} images, {result['threads']} threads (ms; ratio portable / native)",
              ["model", "work", "native ms", "portable ms", "ratio"], rows)
    if overhead := results.get("overhead"):
        start = overhead["start"]
        lines.extend([f"7. job start-up: bare interpreter {start['python_s']:.2f} s, interpreter + a model job's "
                      f"imports {start['model_job_imports_s']:.2f} s, + a table or figure job's "
                      f"{start['light_job_imports_s']:.2f} s", ""])
        if run := overhead.get("run"):
            table("   multi-method jobs of the run: wall time and the part not spent in any method (start-up, "
                  "loading, shared forwards)", ["stage", "job", "wall s", "shared s"],
                  [[j["stage"], j["job"], f"{j['wall_s']:.1f}", f"{j['shared_s']:.1f}"] for j in run["jobs"]])
            lines.extend([f"   variant sharing skipped {100 * share:.1f} % of the {stage} work" for stage, share in
                          run["skipped_share"].items()] + [""])
    if results.get("tie_rules"):
        frame = pd.DataFrame(results["tie_rules"])
        ran = frame["ran"].iloc[0]
        other = "raster" if ran == "random" else "random"
        for metric in ("NEG", "INS"):
            frame[f"{metric} shift"] = frame[f"{metric}_{other}"] - frame[f"{metric}_{ran}"]
            frame[f"{metric} > CI"] = (frame[f"{metric} shift"].abs() > frame[f"{metric}_ci_half"]).map(
                {True: "yes", False: ""})
        columns = ["model", "variant", "method"] + [c for m in ("NEG", "INS") for c in
                                                    (f"{m}_{ran}", f"{m}_{other}", f"{m} shift", f"{m}_ci_half",
                                                     f"{m} > CI")]
        lines.extend([f"9. NEG and INS under the {other} tie rule against the run's {ran} one (CI half-width: the "
                      "run's table)", frame[columns].round(2).to_string(index=False), ""])
    if results.get("cost_estimate"):
        frame = pd.DataFrame(results["cost_estimate"])
        frame["gpu_hours"] = frame["gpu_hours"].map(lambda h: f"{h:.2f}")
        frame["throughput"] = frame["throughput"].map(lambda t: "" if pd.isna(t) else f"{t:.2f}")
        lines.extend(["Cost estimate for 50,000 images on this device (hours; fine-tuning at 25 steps, 2 variants)",
                      frame[["model", "stage", "method", "throughput", "unit", "gpu_hours"]]
                      .fillna("").to_string(index=False), ""])
    return "\n".join(lines)


def save_results(results: dict, json_path: str | Path | None = None, text_path: str | Path | None = None) -> str:
    """Write the figures (JSON) and the printed tables (text); returns the text."""
    text = format_results(results)
    for path, content in ((json_path, json.dumps(results, indent=2, default=float)), (text_path, text + "\n")):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m eea_repro.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=256, help="model inputs per forward pass")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}, or tie_rules (with --run-dir)")
    parser.add_argument("--preset", default="embedded", choices=tuple(PRESET_FILES),
                        help="models (random weights): embedded = config.yaml's, ci = config/ci.yaml's (tiny), "
                        "paper = ViT-B/16 + ResNet-101")
    parser.add_argument("--models", default=None, help="comma-separated model keys of the preset (default: all)")
    parser.add_argument("--images", type=int, default=64, help="images for the engine benchmark")
    parser.add_argument("--naive-images", type=int, default=8, help="images for the naive comparison")
    parser.add_argument("--finetune-images", type=int, default=32, help="images fine-tuned by the batched code")
    parser.add_argument("--finetune-loop-images", type=int, default=4, help="images fine-tuned by the loop")
    parser.add_argument("--finetune-steps", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=32, help="images fine-tuned together")
    parser.add_argument("--map-images", type=int, default=16, help="images per map method")
    parser.add_argument("--dry-run-images", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of the fast measurements (best kept)")
    parser.add_argument("--compile", action="store_true", help="also time the engine on a torch.compile'd model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workflow-dir", default=None, help="the folder with the Snakefile and configs")
    parser.add_argument("--run-dir", default=None, help="a finished run's working folder: its benchmarks/ feed the "
                        "overhead benchmark (shared work per job, the share variant sharing skipped)")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = preset_config(args.preset, args.workflow_dir)
    models = config["models"]
    if args.models:
        models = {name: models[name] for name in args.models.split(",")}
    results = run_benchmarks(
        models, num_classes_of(config), device=args.device, precision=args.precision, batch_size=args.batch_size,
        benchmarks=tuple(b for b in args.benchmarks.split(",") if b), images=args.images,
        naive_images=args.naive_images, finetune_images=args.finetune_images,
        finetune_loop_images=args.finetune_loop_images, finetune_steps=args.finetune_steps,
        chunk_size=args.chunk_size, map_images=args.map_images, methods=config["methods"], compile=args.compile,
        repeats=args.repeats, workflow_dir=args.workflow_dir, dry_run_images=args.dry_run_images,
        run_dir=args.run_dir, config=config, log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    results["settings"]["preset"] = args.preset
    print(save_results(results, args.json))
    return results
