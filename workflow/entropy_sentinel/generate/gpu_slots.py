"""One GPU per generation job on a multi-GPU workstation.

Snakemake's ``gpu`` resource caps how many generation jobs run at once, but it does not say
which device each job gets. ``claim_gpu`` picks one: it takes an exclusive ``fcntl`` lock on
``<lock_dir>/gpu-<id>.lock`` for the first free device and sets ``CUDA_VISIBLE_DEVICES`` to it.
The lock lives as long as the process (the kernel drops it on exit, kill -9 included), so a
crashed job never leaves a stale claim. Call it before torch (or vLLM) is imported.

Under Slurm the scheduler assigns devices itself, so nothing is changed there.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LOCK_DIR = Path("/tmp/entropy-sentinel-gpu-locks")
_HELD: list[GpuSlot] = []  # keeps the lock files open for the life of the process


@dataclass
class GpuSlot:
    device: str | None  # the id now in CUDA_VISIBLE_DEVICES; None: left as it was
    reason: str
    handle: object = None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            if self in _HELD:
                _HELD.remove(self)


def visible_devices(environ=os.environ) -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else what the driver lists."""
    if "ENTROPY_SENTINEL_GPUS" in environ:  # an explicit list, e.g. "0,1,3" (also for tests)
        return _split(environ["ENTROPY_SENTINEL_GPUS"])
    if "CUDA_VISIBLE_DEVICES" in environ:
        return _split(environ["CUDA_VISIBLE_DEVICES"])
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir():
        return [str(i) for i in range(len(list(nvidia.iterdir())))]
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def claim_gpu(
    lock_dir: str | Path | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 1.0,
    log: logging.Logger | None = None,
    environ=os.environ,
) -> GpuSlot:
    """Claim a free GPU for this process and make it the only one CUDA can see."""
    log = log or logging.getLogger(__name__)
    if "SLURM_JOB_ID" in environ:
        return _keep(log, "Slurm assigns the job's GPUs")
    devices = visible_devices(environ)
    if len(devices) <= 1:
        return _keep(log, f"{len(devices)} GPU visible, nothing to choose")
    lock_dir = Path(lock_dir or environ.get("ENTROPY_SENTINEL_GPU_LOCKS") or DEFAULT_LOCK_DIR)
    _make_shared_dir(lock_dir)
    deadline = time.monotonic() + timeout_s
    while True:
        for device in devices:
            handle = _try_lock(lock_dir / f"gpu-{device}.lock")
            if handle is not None:
                handle.truncate(0)
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                environ["CUDA_VISIBLE_DEVICES"] = device
                slot = GpuSlot(device, f"claimed {lock_dir}/gpu-{device}.lock", handle)
                _HELD.append(slot)
                log.info("GPU slot: CUDA_VISIBLE_DEVICES=%s (%s)", device, slot.reason)
                return slot
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"no free GPU among {devices} after {timeout_s:.0f} s (locks in {lock_dir}); "
                "is the workflow's `gpu` resource larger than the number of GPUs?"
            )
        time.sleep(poll_s)


def _keep(log: logging.Logger, reason: str) -> GpuSlot:
    log.info("GPU slot: CUDA_VISIBLE_DEVICES left as is (%s)", reason)
    return GpuSlot(None, reason)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _make_shared_dir(path: Path) -> None:
    # sticky and world-writable like /tmp itself: several users may share one workstation
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            path.chmod(0o1777)


def _try_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
