"""The results manifest: the sha256 of every result file that must come out bit for bit the same on any machine.

``python -m eea_repro.workflow.manifest write results manifests/ci.json`` records a finished run; ``check`` compares a run with
a recorded one and names the first file that differs, in the workflow's order (data, checkpoints, explainers, maps,
metrics, tables, sanity, data randomization, claims), with the rule that made it: the earliest difference is where to
look, every later one may follow from it.

What is recorded: every data file, checkpoint, explainer, map, per-image metric, table, sanity and data-randomization
output and the claims. What is not: figures (PNG/PDF bytes depend on the plotting library's version, not on the
numbers), the report page (it names the commit and the run's times), and the explainers' resume files (a torch
archive names its entries per save). JSON records are hashed without their ``seconds`` and ``machine`` fields.

The manifest also records the configuration file, the numerics mode and its kernels' fingerprint
(:func:`eea_repro.workflow.numerics.fingerprint`), the package versions that computed it, and the CPUs whose runs matched it: a check on a CPU of another kind that passes adds it there with ``--record-cpu``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
from pathlib import Path

from eea_repro.workflow import numerics
from eea_repro.workflow.versions import package_versions

SUFFIXES = (".csv", ".npz", ".safetensors", ".json", ".txt", ".tex", ".html", ".png")
LEFT_OUT = (
    re.compile(r"^report/"),
    re.compile(r"^figures/"),
    re.compile(r"\.resume/"),
)
VOLATILE_JSON_KEYS = frozenset({"seconds", "machine"})  # how long, and on which CPU
VERSIONED_PACKAGES = ("torch", "timm", "numpy", "pandas", "scipy", "scikit-image", "pillow")
# The workflow's stages in the order the DAG runs them: the first differing file is the one to look at.
STAGE_ORDER = ("data", "checkpoints", "explainers", "maps", "metrics", "tables", "two_object", "localisation",
               "sanity", "data_randomization", "claims")


def is_recorded(relative: str) -> bool:
    """Whether a file under the results folder (path relative to it, '/'-separated) belongs in the manifest."""
    return relative.endswith(SUFFIXES) and not any(pattern.search(relative) for pattern in LEFT_OUT)


def file_digest(path: Path) -> str:
    """sha256 of a result file; of a JSON record without its volatile (timing) fields."""
    if path.suffix == ".json":
        payload = _without_volatile(json.loads(path.read_text()))
        data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_JSON_KEYS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


REPLICATE = re.compile(r"^replicate-\d+/")  # a seed replicate's files rank with their stage's


def stage_rank(relative: str) -> int:
    top = REPLICATE.sub("", relative).split("/", 1)[0].removesuffix(".csv").removesuffix(".json").removesuffix(".html")
    return STAGE_ORDER.index(top) if top in STAGE_ORDER else len(STAGE_ORDER)


def making_rules(results_dir: Path) -> dict[str, str]:
    """Output path (relative to the working folder) -> the rule that made it, from Snakemake's per-output records."""
    metadata = results_dir.parent / ".snakemake" / "metadata"
    rules = {}
    for record in metadata.glob("*") if metadata.is_dir() else ():
        try:
            name = base64.urlsafe_b64decode(record.name).decode()
            rules[name] = json.loads(record.read_text())["rule"]
        except (ValueError, KeyError, UnicodeDecodeError):
            continue
    return rules


def rules_by_folder(rules: dict[str, str]) -> dict[str, str]:
    """Folder -> the rule of the first declared output in it (by name)."""
    beside = {}
    for output, rule in sorted(rules.items()):
        beside.setdefault(output.rpartition("/")[0], rule)
    return beside


def rule_of(relative_to_workdir: str, rules: dict[str, str], beside: dict[str, str]) -> str:
    """The rule that made a file: its own record, else that of the folder output it lies in, else that of the nearest
    declared output beside it (``beside``: a job's undeclared side files, e.g. the embedded images next to their label
    file); 'unknown' when the run's records are gone."""
    path = relative_to_workdir
    while path:
        if path in rules:
            return rules[path]
        path = path.rpartition("/")[0]
        if path in beside:
            return beside[path]
    return "unknown"


def collect(results_dir: str | Path) -> list[dict]:
    """The recorded files of a run, in stage order then path order: path, sha256, making rule."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: no such results folder")
    rules = making_rules(results_dir)
    beside = rules_by_folder(rules)
    files = sorted(
        (p.relative_to(results_dir).as_posix() for p in results_dir.rglob("*") if p.is_file()),
        key=lambda rel: (stage_rank(rel), rel),
    )
    return [
        {"path": rel, "sha256": file_digest(results_dir / rel),
         "rule": rule_of(f"{results_dir.name}/{rel}", rules, beside)}
        for rel in files if is_recorded(rel)
    ]


def this_cpu() -> str:
    return f"{numerics.cpu_model()} ({numerics.cpu_vector_extensions()})"


def numerics_fingerprint(mode: str) -> dict[str, str]:
    """The fingerprint of ``mode``'s kernels, computed in a fresh process (the selectors are read when torch loads)."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "eea_repro.workflow.numerics", mode, "--json"], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def write(results_dir: str | Path, manifest_path: str | Path, config: str) -> dict:
    mode = _run_numerics(results_dir)
    manifest = {
        "config": config,
        "numerics": mode,
        "fingerprint": numerics_fingerprint(mode if mode in numerics.MODES else "portable"),
        "versions": package_versions(VERSIONED_PACKAGES),
        "matched_on": [this_cpu()],
        "files": collect(results_dir),
    }
    save(manifest, manifest_path)
    return manifest


def save(manifest: dict, path: str | Path) -> None:
    """JSON with one line per file, so that a commit that changes results shows which files in its diff."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=1)
    files = ",\n".join("  " + json.dumps(entry) for entry in manifest["files"])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f'{head[:-2]},\n "files": [\n{files}\n ]\n}}\n')


def _run_numerics(results_dir: str | Path) -> str:
    """The numerics mode recorded in the run's checkpoint records (all agree in one run); 'unknown' otherwise."""
    modes = {json.loads(p.read_text()).get("numerics", "unknown")
             for p in Path(results_dir).glob("checkpoints/*.json")}
    return modes.pop() if len(modes) == 1 else "unknown"


def compare(expected: list[dict], actual: list[dict]) -> list[str]:
    """One line per difference, in the manifest's order: changed, missing and unexpected files."""
    found = {entry["path"]: entry for entry in actual}
    problems = []
    for entry in expected:
        mine = found.pop(entry["path"], None)
        if mine is None:
            problems.append(f"{entry['path']}: missing (made by rule {entry['rule']})")
        elif mine["sha256"] != entry["sha256"]:
            problems.append(f"{entry['path']}: differs (made by rule {entry['rule']})")
    problems += [f"{path}: not in the manifest (made by rule {entry['rule']})" for path, entry in found.items()]
    return problems


def check(results_dir: str | Path, manifest_path: str | Path, record_cpu: bool = False) -> list[str]:
    """Compare a run with a manifest; returns the differences (empty = identical). ``record_cpu`` adds this CPU to
    the manifest's ``matched_on`` when the run matches."""
    manifest = json.loads(Path(manifest_path).read_text())
    problems = compare(manifest["files"], collect(results_dir))
    if not problems and record_cpu and this_cpu() not in manifest["matched_on"]:
        manifest["matched_on"].append(this_cpu())
        save(manifest, manifest_path)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eea_repro.workflow.manifest", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("results", help="the run's results folder")
    parser.add_argument("manifest", nargs="?", default="manifests/default.json",
                        help="the manifest file (default: %(default)s, the embedded default's run)")
    parser.add_argument("--config", default="config.yaml", help="write: the configuration the run used")
    parser.add_argument("--record-cpu", action="store_true",
                        help="check: add this CPU to the manifest's matched_on list when the run matches")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            manifest = write(args.results, args.manifest, args.config)
            print(f"{args.manifest}: {len(manifest['files'])} files of {args.results}, made on {this_cpu()}")
            return 0
        problems = check(args.results, args.manifest, args.record_cpu)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        print(f"manifest {args.command}: {error}", file=sys.stderr)
        return 2
    manifest = json.loads(Path(args.manifest).read_text())
    if not problems:
        print(f"{args.results} matches {args.manifest}: {len(manifest['files'])} files identical "
              f"(this CPU: {this_cpu()})")
        return 0
    print(f"{args.results} differs from {args.manifest} in {len(problems)} file(s); the first: {problems[0]}")
    for line in problems[1:10]:
        print(f"  then {line}")
    versions = package_versions(VERSIONED_PACKAGES)
    changed = {k: (v, versions.get(k)) for k, v in manifest["versions"].items() if versions.get(k) != v}
    if changed:
        print("  package versions differ from the manifest's (other versions compute other bits): "
              + ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()))
    print(f"  manifest made on: {'; '.join(manifest['matched_on'])}; this CPU: {this_cpu()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
