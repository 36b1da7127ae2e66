"""The installed versions of the packages that compute the results: the report shows them and the results manifest
keys its bits to them."""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("torch", "timm", "snakemake", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "jinja2", "safetensors")


def package_versions(names=PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
