"""The final HTML report: one Jinja2 page with every table and figure embedded, openable offline and mailable."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from eea_repro.workflow import numerics
from eea_repro.report.costs import run_cost_estimate
from eea_repro.workflow.io import atomic_path
from eea_repro.workflow.versions import package_versions
from eea_repro.metrics.names import conventions

def git_commit(directory: str | Path = ".") -> str:
    """The workflow's commit, marked dirty when the checkout has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + (" (with uncommitted changes)" if status.stdout.strip() else "")


def rule_runtimes(benchmarks_dir: str | Path) -> pd.DataFrame:
    """Wall time and peak memory of every job that has a ``benchmark:`` file, grouped by stage."""
    rows = []
    for path in sorted(Path(benchmarks_dir).rglob("*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        if frame.empty:
            continue
        rows.append({
            "stage": path.parent.name,
            "job": path.stem,
            "seconds": float(frame["s"].iloc[-1]),
            "max_rss_mb": float(frame["max_rss"].iloc[-1]) if "max_rss" in frame else float("nan"),
        })
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "max_rss_mb"])


def method_timings(benchmarks_dir: str | Path, runtimes: pd.DataFrame) -> pd.DataFrame:
    """Per-method seconds of the jobs that serve several methods (``<stage>/<job>.methods.csv``: model, method,
    seconds, images), each method charged its share of the job's shared work (start-up, loading, clean forwards):
    the job's wall time beyond its methods' seconds, spread evenly over them."""
    wall = runtimes.set_index(["stage", "job"])["seconds"]
    frames = []
    for path in sorted(Path(benchmarks_dir).rglob("*.methods.csv")):
        frame = pd.read_csv(path)
        key = (path.parent.name, path.name.removesuffix(".methods.csv"))
        shared = max(0.0, float(wall.get(key, frame["seconds"].sum())) - frame["seconds"].sum())
        frames.append(frame.assign(stage=key[0], seconds=frame["seconds"] + shared / len(frame)))
    columns = ["stage", "model", "method", "seconds", "images"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def method_costs(runtimes: pd.DataFrame, benchmarks_dir: str | Path) -> pd.DataFrame:
    """Seconds per image per (model, method) for map making and for metrics, so a user can budget a larger run: each
    map and metric job reports its methods' seconds and images (:func:`method_timings`), and a method's cost is its
    seconds, with its share of its jobs' shared work, over the images it served (both variants count)."""
    columns = ["model", "method", "maps_s_per_image", "metrics_s_per_image"]
    jobs = method_timings(benchmarks_dir, runtimes)
    jobs = jobs[jobs["stage"].isin(["maps", "metrics"])]
    if jobs.empty:
        return pd.DataFrame(columns=columns)
    totals = jobs.groupby(["model", "method", "stage"])[["seconds", "images"]].sum()
    per_image = (totals["seconds"] / totals["images"]).unstack("stage")
    per_image = per_image.rename(columns={"maps": "maps_s_per_image", "metrics": "metrics_s_per_image"})
    return per_image.reset_index().reindex(columns=columns)


# Image grids (photos under heat maps) shrink to under half as JPEG at this quality, with no visible loss at the
# report's width; plots and text do not, and stay PNG. This keeps the default report small enough to mail.
JPEG_QUALITY = 90


def embed_png(path: str | Path) -> str:
    """A data URI of a PNG figure: the PNG itself, or a JPEG re-encoding where that is at most half its size."""
    png = Path(path).read_bytes()
    with Image.open(io.BytesIO(png)) as image:
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A") if "A" in image.getbands() else None)
    jpeg = io.BytesIO()
    flat.save(jpeg, "JPEG", quality=JPEG_QUALITY, optimize=True)
    if 2 * jpeg.tell() <= len(png):
        return "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_environment(template_dir: str | Path) -> Environment:
    """The Jinja2 environment of the report: HTML autoescaping and the ``embed`` filter for PNG files."""
    environment = Environment(loader=FileSystemLoader(str(template_dir)), autoescape=select_autoescape(["html", "j2"]),
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["embed"] = embed_png
    return environment


def table_sentence_of(per_image_csv: str | Path, method_labels: dict[str, str], controls: set[str]) -> str:
    """The sentence under a results table: best method per metric, EEA against the best baseline (paired test)."""
    from eea_repro.metrics.significance import compare_to_best_baseline, table_sentence

    return table_sentence(compare_to_best_baseline(pd.read_csv(per_image_csv), controls), method_labels.__getitem__)


def numerics_provenance(mode: str) -> dict:
    """The provenance section's numerics: the mode, what it exports to every job, and the report's own CPU."""
    return {"mode": mode, "settings": numerics.job_environment(mode), "report_machine": numerics.cpu_model()}


def build_report(*, template, style, config: dict, method_labels: dict[str, str], controls: list[str],
                 tables: list[dict], figures: list[dict], checkpoints: list[dict], explainers: list[dict],
                 benchmarks_dir, output, sections: dict[str, str] | None = None) -> None:
    """Render the report. ``tables``/``figures`` are dicts with the model key, variant and file paths;
    ``method_labels`` names each method and ``controls`` are the control methods (the workflow reads both from the
    method registry, so this job needs no torch).

    ``sections`` maps a name to a JSON file written by a stage (sanity checks, localisation, ...): its content is
    available to the templates under that name, so a stage adds a report section without touching this function.
    PNG paths inside are embedded with the ``embed`` filter, keeping the page self-contained.
    """
    environment = report_environment(Path(template).parent)
    controls = set(controls)
    runtimes = rule_runtimes(benchmarks_dir)
    costs = method_costs(runtimes, benchmarks_dir)
    context = {
        "style": Path(style).read_text(),
        "metric_conventions": conventions(config["metrics"]["ltx_code"], config["metrics"]["tie_break"]),
        "config": config,
        "config_yaml": yaml.safe_dump(config, sort_keys=False),
        "tables": [{**t, "html": Path(t["html"]).read_text(),
                    "sentence": table_sentence_of(t["per_image"], method_labels, controls)} for t in tables],
        "figures": [{**f, "src": embed_png(f["png"])} for f in figures],
        "checkpoints": [{**c, **json.loads(Path(c["record"]).read_text())} for c in checkpoints],
        "explainers": [{**e, **json.loads(Path(e["history"]).read_text())} for e in explainers],
        "runtimes": runtimes.to_dict("records"),
        "method_costs": costs.to_dict("records"),
        "cost_estimate": run_cost_estimate(costs, runtimes, config, controls).to_dict("records"),
        "runtime_total": float(runtimes["seconds"].sum()) if len(runtimes) else 0.0,
        "versions": package_versions(),
        "commit": git_commit(),
        "numerics": numerics_provenance(config["numerics"]),
    }
    for name, path in (sections or {}).items():
        context[name] = json.loads(Path(path).read_text())
    html = environment.get_template(Path(template).name).render(**context)
    with atomic_path(output) as tmp:
        tmp.write_text(html)
