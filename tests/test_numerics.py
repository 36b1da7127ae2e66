"""Portable numerics: the settings reach every job, each pinned selector governs bits, the pinned path computes the
bits the committed manifest recorded (on whatever CPU this runs), and torch.compile stays out of portable CPU runs."""

import json
import os
import platform
import subprocess
import sys

import pytest

from eea_repro.workflow import numerics
from eea_repro.workflow.config import ConfigError, load_config, validate_config

x86_with_avx2 = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or "avx2" not in numerics.cpu_vector_extensions(),
    reason="the portable path is defined for x86-64 CPUs with AVX2",
)


def fingerprint_under(environ_changes: dict[str, str]) -> dict[str, str]:
    """The fingerprint computed in a fresh process started in portable mode with ``environ_changes`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.SHOWN_VARIABLES and k != numerics.MODE_VARIABLE}
    env.update(environ_changes)
    result = subprocess.run([sys.executable, "-m", "eea_repro.workflow.numerics", "portable", "--json"], env=env,
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def test_portable_mode_pins_every_selector_and_keeps_the_users_values():
    environ = {"PATH": "/bin"}
    in_force = numerics.export_numerics_settings("portable", environ)
    assert in_force["ATEN_CPU_CAPABILITY"] == "avx2" and in_force["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert in_force["MKL_CBWR"] == "COMPATIBLE" and in_force["MKL_DYNAMIC"] == "FALSE"
    assert environ[numerics.MODE_VARIABLE] == "portable"
    users = {"ATEN_CPU_CAPABILITY": "avx512", numerics.MODE_VARIABLE: "native"}
    numerics.export_numerics_settings("portable", users)
    assert users["ATEN_CPU_CAPABILITY"] == "avx512" and users[numerics.MODE_VARIABLE] == "portable"
    assert any("ATEN_CPU_CAPABILITY" in line for line in numerics.header_lines(users))  # the departure is logged
    native = numerics.export_numerics_settings("native", {})
    assert "ATEN_CPU_CAPABILITY" not in native and native["MKL_DYNAMIC"] == "FALSE"
    with pytest.raises(ValueError, match="numerics"):
        numerics.job_environment("fast")


@x86_with_avx2
def test_pinned_selectors_compute_the_manifests_fingerprint_and_a_changed_one_does_not(repo):
    """The committed CI manifest holds the fingerprint of the portable path, made on another machine: the pinned
    settings compute it here; each selector set to another path that every x86-64 CPU has changes its own kernel's
    bits."""
    recorded = json.loads((repo / "manifests/ci.json").read_text())["fingerprint"]
    assert fingerprint_under({}) == recorded
    changed = {
        "ATEN_CPU_CAPABILITY": ("default", "softmax (ATen)"),
        "ONEDNN_MAX_CPU_ISA": ("SSE41", "convolution (oneDNN)"),
        "MKL_CBWR": ("AUTO", "matrix product (MKL)"),
    }
    for variable, (value, kernel) in changed.items():
        assert fingerprint_under({variable: value})[kernel] != recorded[kernel], variable


def test_every_job_log_starts_with_the_numerics_in_force(tiny_run):
    """Each job's log names the mode, the CPU and the pinned settings; torch jobs add the kernels torch selected."""
    logs = sorted((tiny_run / "logs").rglob("*.log"))
    assert len(logs) > 30
    torch_jobs = 0
    for log in logs:
        lines = log.read_text().splitlines()
        assert lines[1].startswith("numerics: portable; CPU: "), log
        assert "ATEN_CPU_CAPABILITY=avx2" in lines[2] and "MKL_CBWR=COMPATIBLE" in lines[2], log
        kernels = [line for line in lines if "ATen CPU capability" in line]
        if kernels:
            torch_jobs += 1
            assert "ATen CPU capability AVX2" in kernels[0] and "deterministic algorithms: True" in kernels[0], log
    assert torch_jobs > 10
    record = json.loads((tiny_run / "results/checkpoints/vit.json").read_text())
    assert record["numerics"] == "portable" and "ATen CPU capability AVX2" in record["machine"]["kernels"]
    report = (tiny_run / "results/report/index.html").read_text()
    assert "numerics: portable" in report and "MKL_CBWR=COMPATIBLE" in report


def test_compile_is_refused_for_a_portable_cpu_run(repo):

    config = load_config(repo / "config/ci.yaml")
    config |= {"device": "cpu", "metrics": {**config["metrics"], "compile": True}}
    with pytest.raises(ConfigError, match="metrics.compile"):
        validate_config(config)
    validate_config(config | {"numerics": "native"})
    assert not numerics.compiles_for_host("portable", "cpu")
    assert numerics.compiles_for_host("portable", "cuda") and numerics.compiles_for_host("native", "cpu")
