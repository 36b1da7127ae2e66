"""GPU binding: concurrent jobs get disjoint devices, killed jobs free theirs, user and Slurm choices are respected.

No GPU is needed: the devices are names, and the exclusivity comes from the locks alone.
"""

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations

import pytest

from eea_repro.workflow.gpu_slots import (
    GpuSlotTimeout,
    bound_gpus,
    lock_path,
    parse_nvidia_smi_list,
    visible_devices,
)

# A fake job: wait for a common start time, bind `count` devices, hold them, report what it saw.
FAKE_JOB = """
import json, os, sys, time
from eea_repro.workflow.gpu_slots import bound_gpus
lock_dir, count, go_at, hold_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, go_at - time.time()))
with bound_gpus(count, lock_dir, timeout_s=30, poll_s=0.05, log=lambda _: None) as devices:
    start = time.time()
    visible = os.environ["CUDA_VISIBLE_DEVICES"]
    time.sleep(hold_s)
    end = time.time()
print(json.dumps({"devices": devices, "visible": visible, "start": start, "end": end}))
"""


def run_fake_jobs(lock_dir, counts, devices="0,1,2,3", hold_s=0.5):
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": devices}
    environ.pop("SLURM_JOB_ID", None)
    go_at = time.time() + 1.0  # every job starts binding at the same moment
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", FAKE_JOB, str(lock_dir), str(count), str(go_at), str(hold_s)],
            env=environ, stdout=subprocess.PIPE, text=True,
        )
        for count in counts
    ]
    results = []
    for job in jobs:
        stdout, _ = job.communicate(timeout=60)
        assert job.returncode == 0
        results.append(json.loads(stdout))
    return results


def assert_no_shared_device(results):
    for first, second in combinations(results, 2):
        overlap = first["start"] < second["end"] and second["start"] < first["end"]
        if overlap:
            assert not set(first["devices"]) & set(second["devices"]), (first, second)


def test_concurrent_jobs_never_share_a_device(tmp_path):
    results = run_fake_jobs(tmp_path / "locks", [1] * 6)
    assert_no_shared_device(results)
    for result in results:
        assert len(result["devices"]) == 1
        assert result["visible"] == result["devices"][0]
    # six jobs started together on four devices: all four were in use, and the last two had to wait their turn
    assert {device for result in results for device in result["devices"]} == {"0", "1", "2", "3"}
    starts = sorted(result["start"] for result in results)
    assert starts[-1] - starts[0] >= 0.4


def test_two_gpu_job_mixed_with_one_gpu_jobs(tmp_path):
    results = run_fake_jobs(tmp_path / "locks", [2, 1, 1, 1, 1])
    assert_no_shared_device(results)
    pair = results[0]
    assert len(set(pair["devices"])) == 2
    assert pair["visible"] == ",".join(pair["devices"])
    assert all(len(result["devices"]) == 1 for result in results[1:])


def test_a_killed_jobs_device_is_free_again(tmp_path):
    lock_dir = tmp_path / "locks"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from eea_repro.workflow.gpu_slots import bound_gpus\n"
         "with bound_gpus(1, sys.argv[1], devices=['0'], environ={}, log=print):\n"
         "    sys.stdout.flush()\n"
         "    time.sleep(60)\n",
         str(lock_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert "bound to GPU(s) 0" in holder.stdout.readline()
        with pytest.raises(GpuSlotTimeout):  # held while the job lives
            with bound_gpus(1, lock_dir, devices=["0"], environ={}, timeout_s=0.3, poll_s=0.05, log=lambda _: None):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    assert lock_path(lock_dir, "0").exists()  # the lock file stays, but the kernel dropped the lock
    started = time.monotonic()
    with bound_gpus(1, lock_dir, devices=["0"], environ={}, timeout_s=5, poll_s=0.05, log=lambda _: None) as devices:
        assert devices == ["0"]
    assert time.monotonic() - started < 1.0


def test_only_user_allowed_devices_are_used(tmp_path):
    quiet = {"log": lambda _: None, "timeout_s": 0.3, "poll_s": 0.05}
    first, second, third = ({"CUDA_VISIBLE_DEVICES": "2,3"} for _ in range(3))
    with bound_gpus(1, tmp_path, environ=first, **quiet) as got_first:
        with bound_gpus(1, tmp_path, environ=second, **quiet) as got_second:
            assert sorted(got_first + got_second) == ["2", "3"]
            assert (first["CUDA_VISIBLE_DEVICES"], second["CUDA_VISIBLE_DEVICES"]) == (got_first[0], got_second[0])
            with pytest.raises(GpuSlotTimeout):  # devices 0 and 1 exist on the machine but were not allowed
                with bound_gpus(1, tmp_path, environ=third, **quiet):
                    pass
    assert first == second == third == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_uuid_entries_pass_through(tmp_path):
    uuids = "GPU-8f3e2a1b-0000-1111-2222-333344445555,MIG-0c1d2e3f-aaaa-bbbb-cccc-ddddeeeeffff"
    environ = {"CUDA_VISIBLE_DEVICES": uuids}
    with bound_gpus(2, tmp_path, environ=environ, log=lambda _: None) as devices:
        assert devices == uuids.split(",")
        assert environ["CUDA_VISIBLE_DEVICES"] == uuids
    assert {path.name for path in tmp_path.iterdir()} == {f"gpu-{uuid}.lock" for uuid in uuids.split(",")}


def test_visible_devices_reads_the_user_restriction_before_probing():
    def probe():
        raise AssertionError("must not probe when CUDA_VISIBLE_DEVICES is set")

    assert visible_devices({"CUDA_VISIBLE_DEVICES": " 2, 3 "}, probe) == ["2", "3"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, probe) == []
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}, probe) == []
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "1,-1,2"}, probe) == ["1"]  # CUDA stops at an invalid entry
    assert visible_devices({}, lambda: 3) == ["0", "1", "2"]
    assert visible_devices({}, lambda: ["GPU-a", "GPU-b"]) == ["GPU-a", "GPU-b"]
    assert visible_devices({}, lambda: 0) == []


def test_nvidia_smi_listing_gives_indices_and_mig_instances():
    listing = (
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
        "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)\n"
        "  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)\n"
        "  MIG 3g.20gb     Device  1: (UUID: MIG-ffffffff-0000-1111-2222-333333333333)\n"
        "GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-99999999-8888-7777-6666-555555555555)\n"
    )
    assert parse_nvidia_smi_list(listing) == [
        "0",
        "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "MIG-ffffffff-0000-1111-2222-333333333333",
        "2",
    ]


def test_slurm_jobs_keep_what_slurm_assigned(tmp_path):
    environ = {"SLURM_JOB_ID": "4242", "CUDA_VISIBLE_DEVICES": "1,3"}
    messages = []
    with bound_gpus(2, tmp_path / "locks", environ=environ, devices=["0", "1", "2", "3"], log=messages.append) as got:
        assert got == ["1", "3"]
        assert environ == {"SLURM_JOB_ID": "4242", "CUDA_VISIBLE_DEVICES": "1,3"}
    assert environ == {"SLURM_JOB_ID": "4242", "CUDA_VISIBLE_DEVICES": "1,3"}
    assert not (tmp_path / "locks").exists()
    assert "4242" in messages[0]


def test_zero_gpus_or_no_device_changes_nothing(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    with bound_gpus(0, tmp_path / "locks", environ=environ) as got:
        assert got == []
        assert environ == {"CUDA_VISIBLE_DEVICES": "0,1"}
    none_visible = {"CUDA_VISIBLE_DEVICES": ""}
    with bound_gpus(1, tmp_path / "locks", environ=none_visible, log=lambda _: None) as got:
        assert got == []
        assert none_visible == {"CUDA_VISIBLE_DEVICES": ""}
    assert not (tmp_path / "locks").exists()


def test_environment_is_restored_and_locks_released_even_on_failure(tmp_path):
    environ = {}
    messages = []
    with pytest.raises(RuntimeError, match="job failed"):
        with bound_gpus(1, tmp_path, environ=environ, devices=["5"], log=messages.append):
            assert environ == {"CUDA_VISIBLE_DEVICES": "5"}
            raise RuntimeError("job failed")
    assert environ == {}
    assert messages[0].startswith("bound to GPU(s) 5")
    environ = {"CUDA_VISIBLE_DEVICES": "4,5"}
    with bound_gpus(1, tmp_path, environ=environ, devices=["5"], timeout_s=0.3, log=lambda _: None):
        assert environ == {"CUDA_VISIBLE_DEVICES": "5"}
    assert environ == {"CUDA_VISIBLE_DEVICES": "4,5"}


def test_timeout_is_one_line_naming_the_lock_dir_and_count(tmp_path):
    quiet = {"environ": {}, "devices": ["0", "1"], "log": lambda _: None}
    with bound_gpus(1, tmp_path, **quiet):
        started = time.monotonic()
        with pytest.raises(GpuSlotTimeout) as raised:
            with bound_gpus(2, tmp_path, timeout_s=0.4, poll_s=0.05, **quiet):
                pass
        assert 0.4 <= time.monotonic() - started < 2.0
    message = str(raised.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "no 2 free GPU(s)" in message
    # the partial set was released: both devices are free again
    with bound_gpus(2, tmp_path, timeout_s=0.3, **quiet) as got:
        assert got == ["0", "1"]


def test_asking_for_more_devices_than_visible_fails_at_once(tmp_path):
    with pytest.raises(ValueError, match="needs 3 GPU"):
        with bound_gpus(3, tmp_path, environ={}, devices=["0", "1"], log=lambda _: None):
            pass
