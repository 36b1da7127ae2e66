"""What every job's script starts with (eea_repro.workflow.logs.job_context): its thread count reaches torch whether the script
imported torch before the job started or imports it later, and a job that never uses torch does not import it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from types import SimpleNamespace
{before}
from eea_repro.workflow.logs import job_context

job = SimpleNamespace(threads=1, log=[sys.argv[1]], resources=SimpleNamespace(gpu=0))
with job_context(job):
    imported_by_the_job = "torch" in sys.modules
    import torch
    threads = torch.get_num_threads()
print(imported_by_the_job, threads)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch's default is already one thread")
@pytest.mark.parametrize("before", ["", "import torch"])
def test_the_jobs_threads_reach_torch_imported_before_or_after(before, tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before), str(tmp_path / "job.log")],
                            capture_output=True, text=True, check=True, env=environment)
    imported, threads = result.stdout.split()
    assert imported == str(bool(before)) and int(threads) == 1


# Scripts whose imports must not pull in torch: the table, curve and summary jobs that only read CSV / JSON files, the
# embedded dataset and split-list jobs that every model job waits for, the report job (which never does:
# tests/test_report_template.py), and the claims and mixed-grid jobs (these two still import torch later, inside the
# functions they call, to upsample maps and load images)
LIGHT_SCRIPTS = ["make_table", "make_mixed_table", "localisation_table", "localisation_summary", "make_sanity_eea_curve",
                 "make_sanity_methods_curves", "sanity_summary", "make_data_randomization_boxplot",
                 "data_randomization_summary", "make_paper_figures_summary", "make_mixed_grid", "check_claims",
                 "make_report", "make_embedded_dataset", "make_split_lists"]


def test_table_and_figure_jobs_do_not_import_torch(repo):
    imports = [line for name in LIGHT_SCRIPTS for line in (repo / "scripts" / f"{name}.py").read_text().splitlines()
               if line.startswith("from eea_repro")]
    assert len(imports) >= 2 * len(LIGHT_SCRIPTS)  # job_context and the job's own function, in every script
    code = "\n".join(imports + ["import sys", "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


FAILING_JOB = """
import sys
from types import SimpleNamespace
from eea_repro.workflow.logs import job_context

with job_context(SimpleNamespace(threads=1, log=[sys.argv[1]], resources=SimpleNamespace(gpu=0))):
    raise {error}("photos/cat 3.jpg (line 4 of labels.csv): cannot decode it;\\n fix it or set dataset.on_bad_image")
"""


def test_a_bad_input_is_one_line_on_screen_and_its_traceback_stays_in_the_log(tmp_path):
    log = tmp_path / "job.log"
    result = subprocess.run([sys.executable, "-c", FAILING_JOB.format(error="ValueError"), str(log)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Input error: photos/cat 3.jpg (line 4 of labels.csv): cannot decode it; fix it or set "
        f"dataset.on_bad_image (traceback in {log})"]
    assert "Traceback (most recent call last)" in log.read_text() and "ValueError: photos/cat 3.jpg" in log.read_text()


def test_a_bug_keeps_its_traceback_on_screen(tmp_path):
    result = subprocess.run([sys.executable, "-c", FAILING_JOB.format(error="RuntimeError"), str(tmp_path / "job.log")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "Input error" not in result.stderr
