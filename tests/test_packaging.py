"""The conda environments of the rules list exactly the Python requirements of pyproject.toml."""

import re
import tomllib

import pytest
import yaml


@pytest.mark.parametrize("env", ["envs/torch.yaml", "envs/report.yaml"])
def test_conda_env_matches_pyproject(repo, env):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = sorted(req for req in project if not req.startswith("snakemake"))
    spec = yaml.safe_load((repo / env).read_text())
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item)
    assert sorted(pip) == runtime
    python = next(item for item in spec["dependencies"] if isinstance(item, str) and item.startswith("python="))
    assert python == "python=3.11"


def test_every_rule_has_a_log_and_an_env(repo):
    """Every rule has its log and env; a rule made from another (`use rule ... with:`, the seed replicates) keeps
    the env and needs a log of its own."""
    for path in (repo / "rules").glob("*.smk"):
        text = path.read_text()
        rules = len(re.findall(r"^\s*rule\b", text, re.MULTILINE))  # named, and anonymous ones made in a loop
        derived = len(re.findall(r"^use rule \w+ as \w+ with:", text, re.MULTILINE))
        assert text.count("log:") == rules + derived, f"{path.name}: a rule without log:"
        assert text.count("conda:") == rules, f"{path.name}: a rule without conda:"
