"""What the workflow learns from the method registry and the configured models while Snakemake reads it, kept between
invocations so that reading the workflow imports neither torch nor timm when nothing they answer has changed.

Snakemake reads the workflow on every invocation: a dry run, one table rebuilt, and once more inside every cluster job.
Each read checked every configured model with every configured method (timm builds the models on the meta device) and
counted the sanity checks' layers: 6 of the 8 s a dry run took on a 2-core CPU. The answers are kept in ``cache_dir``
(the working directory's ``.snakemake/``) under a key of everything they depend on — the package's source files, the
installed torch and timm, and the config's ``models``, ``methods`` and ``sanity`` sections — so a changed input is a
new key and a kept answer is never stale. A config that fails the checks raises before anything is kept. When an
answer must be computed, a child process computes it, so that Snakemake's process never imports torch at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from eea_repro.workflow.config import ConfigError
from eea_repro.workflow.io import kept

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole eea_repro package
KEYED_CONFIG_SECTIONS = ("models", "methods", "sanity")


def package_digest() -> str:
    """sha256 of the package's source and schema files (their paths and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix in (".py", ".yaml") and path.is_file():
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _method_entries(_config=None) -> dict[str, dict]:
    from eea_repro.methods import METHODS

    return {name: {"families": list(method.families), "label": method.label, "seeded": method.seeded,
                   "control": method.control}
            for name, method in METHODS.items()}


def _model_entries(config: dict) -> dict[str, dict]:
    """The checked models' sanity layer counts and their memory facts (``job_memory.model_facts``)."""
    from eea_repro.preflight.compatibility import check_models
    from eea_repro.preflight.job_memory import model_facts

    return {"layers": check_models(config), "memory": model_facts(config)}


TASKS = {"methods": _method_entries, "models": _model_entries}


def computed_apart(task: str, config: dict | None = None):
    """``TASKS[task](config)`` computed in a fresh Python process: torch and timm are imported there, so Snakemake's
    own process, which lives as long as the run, never holds them (0.7 GB). A ConfigError there is raised here."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    result = subprocess.run([sys.executable, "-m", "eea_repro.preflight.facts", task], input=json.dumps(config),
                            capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"the workflow's preflight check ({task}) failed:\n{result.stderr[-4000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if "config_error" in answer:
        raise ConfigError(answer["config_error"])
    return answer["value"]


class WorkflowFacts:
    """The method registry's entries and the checked models' sanity layer counts and memory facts, through the cache
    in ``cache_dir``."""

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)
        self.package = package_digest()
        self.versions = {name: _installed_version(name) for name in ("torch", "timm")}

    def methods(self) -> dict[str, dict]:
        """Every registered map method: name -> {"families", "label", "seeded", "control"} (see
        ``methods.registry.Method``)."""
        return kept(self.cache_dir, "methods", {"package": self.package}, lambda: computed_apart("methods"))

    def _models(self, config: dict) -> dict[str, dict]:
        key = {"package": self.package, "versions": self.versions,
               "config": {section: config[section] for section in KEYED_CONFIG_SECTIONS}}
        return kept(self.cache_dir, "models", key, lambda: computed_apart("models", config))

    def models(self, config: dict) -> dict[str, dict[str, int]]:
        """``compatibility.check_models(config)``: raises ``ConfigError`` for a model or method that cannot run, else
        each model's sanity-check layer count per granularity."""
        return self._models(config)["layers"]

    def memory(self, config: dict) -> dict[str, dict[str, int]]:
        """``job_memory.model_facts(config)``: each model's weights and footprint per input, the jobs' mem_mb."""
        return self._models(config)["memory"]


def _main() -> None:
    """The child process of :func:`computed_apart`: the config as JSON on stdin, the answer as JSON on stdout."""
    task, config = sys.argv[1], json.loads(sys.stdin.read())
    try:
        answer = {"value": TASKS[task](config)}
    except ConfigError as error:
        answer = {"config_error": str(error)}
    print(json.dumps(answer))


if __name__ == "__main__":
    _main()
