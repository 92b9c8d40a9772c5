"""The GPU slot allocator: concurrent jobs on one machine each get their own device."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from entropy_sentinel.generate.gpu_slots import claim_gpu

CLAIM = """
import os, sys, time
from entropy_sentinel.generate.gpu_slots import claim_gpu
slot = claim_gpu(lock_dir=sys.argv[1], timeout_s=float(sys.argv[2]), poll_s=0.05)
print(os.environ["CUDA_VISIBLE_DEVICES"], time.monotonic(), flush=True)
time.sleep(float(sys.argv[3]))
"""


def spawn(lock_dir, gpus: str, timeout_s: float = 30, hold_s: float = 1.5, **env):
    environ = {"ENTROPY_SENTINEL_GPUS": gpus, "PATH": "/usr/bin:/bin", **env}
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(lock_dir), str(timeout_s), str(hold_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    procs = [spawn(tmp_path, "0,1,2") for _ in range(3)]
    devices = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        devices.append(out.split()[0])
    assert sorted(devices) == ["0", "1", "2"]


def test_a_job_waits_for_a_free_device_and_a_dead_job_frees_its_own(tmp_path):
    holder = spawn(tmp_path, "4,7", hold_s=60)
    other = spawn(tmp_path, "4,7", hold_s=60)
    held = {holder.stdout.readline().split()[0], other.stdout.readline().split()[0]}
    assert held == {"4", "7"}
    waiter = spawn(tmp_path, "4,7", hold_s=0)
    time.sleep(0.5)
    assert waiter.poll() is None  # both devices taken: it waits
    holder.kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
    holder.wait()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.split()[0] in held
    other.kill()
    other.wait()


def test_gives_up_after_the_timeout(tmp_path):
    holder = spawn(tmp_path, "0,1", hold_s=60)
    holder2 = spawn(tmp_path, "0,1", hold_s=60)
    holder.stdout.readline(), holder2.stdout.readline()
    late = spawn(tmp_path, "0,1", timeout_s=0.3)
    _, err = late.communicate(timeout=30)
    assert late.returncode != 0 and "no free GPU" in err
    for proc in (holder, holder2):
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "environ, reason",
    [
        ({"SLURM_JOB_ID": "12", "ENTROPY_SENTINEL_GPUS": "0,1"}, "Slurm"),
        ({"CUDA_VISIBLE_DEVICES": "3"}, "1 GPU"),
        ({"ENTROPY_SENTINEL_GPUS": ""}, "0 GPU"),
    ],
)
def test_leaves_the_environment_alone_when_there_is_nothing_to_choose(tmp_path, environ, reason):
    before = dict(environ)
    slot = claim_gpu(lock_dir=tmp_path, environ=environ)
    assert slot.device is None and reason in slot.reason
    assert environ == before
    assert not list(tmp_path.iterdir())


def test_release_frees_the_slot(tmp_path):
    environ = {"ENTROPY_SENTINEL_GPUS": "0,1"}
    first = claim_gpu(lock_dir=tmp_path, environ=environ)
    environ.pop("CUDA_VISIBLE_DEVICES")
    second = claim_gpu(lock_dir=tmp_path, environ=environ)
    assert {first.device, second.device} == {"0", "1"}
    first.release()
    environ.pop("CUDA_VISIBLE_DEVICES")
    third = claim_gpu(lock_dir=tmp_path, environ=environ, timeout_s=0)
    assert third.device == first.device
    second.release()
    third.release()
