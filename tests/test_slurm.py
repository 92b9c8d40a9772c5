"""The workflow on a real Slurm (tests/slurm/start.sh): same results as a local run, a scancel'd
generation job resumes from its chunks, and a failed job is retried with more memory.

Skipped unless `sinfo` answers. Snakemake runs as a command, as a user would run it, and is
stopped with SIGINT: on SIGTERM it waits for jobs whose status may never resolve.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CI_PROFILE = REPO / "profiles" / "ci-slurm"
WORKFLOW_PROFILE = REPO / "profiles" / "default"
SHARD = "results/generations/tiny/synthetic/shard-{}.parquet"


def slurm_available() -> bool:
    if shutil.which("sinfo") is None or find_spec("snakemake_executor_plugin_slurm") is None:
        return False
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return False
    return states.returncode == 0 and bool({"idle", "mix", "alloc"} & set(states.stdout.split()))


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not slurm_available(), reason="no Slurm cluster answers (tests/slurm/start.sh)"
    ),
]


def slurm_config(model_dir: Path) -> dict:
    """20 items in 2 shards; 1-item chunks of 48 tokens, so a shard lasts seconds."""
    from test_workflow import five_domain_demo

    config = five_domain_demo()
    config["models"] = {"tiny": {"source": "local", "path": str(model_dir)}}
    config["benchmarks"]["synthetic"].update(n_per_domain=4, seed=3)
    config["generation"].update(shard_size=10, chunk_size=1)
    config["generation"]["settings"].update(max_new_tokens=48, batch_size=1)
    config["estimator"]["study_max_train_slices"] = 1
    config["sweep"] = {"enabled": False}
    return config


def snakemake(workdir: Path, *args: str, slurm: bool = True, timeout: int = 420, wait=True):
    """Run snakemake in ``workdir`` (as a user would: cd there, point at the Snakefile)."""
    command = ["timeout", "-s", "INT", "-k", "15", str(timeout), SNAKEMAKE]
    command += ["--workflow-profile", str(WORKFLOW_PROFILE)]
    command += ["--profile", str(CI_PROFILE)] if slurm else ["--cores", "2"]
    command += list(args)
    log = open(workdir / f"snakemake-{time.monotonic_ns()}.out", "w")  # noqa: SIM115
    proc = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log_path = Path(log.name)
    if wait:
        proc.wait()
        log.close()
    return proc


def workflow_dir(root: Path, config: dict) -> Path:
    root.mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def workflow_args(workdir: Path) -> list[str]:
    return ["--snakefile", str(REPO / "Snakefile"), "--configfile", "config/config.yaml"]


def assert_ok(proc) -> None:
    assert proc.returncode == 0, proc.log_path.read_text()[-6000:]


def slurm_jobs() -> dict[str, str]:
    """Running or pending Slurm jobs: id -> comment (the plugin writes rule and wildcards there)."""
    listing = subprocess.run(
        ["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("|", 1) for line in listing.splitlines() if "|" in line)


def cancel_mid_shard(workdir: Path, proc, shard: int, timeout_s: float = 150) -> set[str]:
    """scancel the shard's generate job once it has committed a chunk; returns the items done."""
    parts = workdir / "results/generations/tiny/synthetic" / f".shard-{shard}.parts"
    deadline = time.monotonic() + timeout_s
    while not list(parts.glob("chunk-*.parquet")):
        assert proc.poll() is None, proc.log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, "no chunk committed in time"
        time.sleep(0.2)
    job = [
        i
        for i, comment in slurm_jobs().items()
        if comment.startswith("rule_generate_") and comment.endswith(f"_{shard}")
    ]
    assert len(job) == 1, slurm_jobs()
    subprocess.run(["scancel", job[0]], check=True)
    proc.wait()
    assert proc.returncode != 0
    assert not (workdir / SHARD.format(shard)).exists(), "the shard finished before scancel"
    done = pd.concat(pd.read_parquet(p) for p in parts.glob("chunk-*.parquet"))
    return set(done["item_id"])


def compare_tables(local: Path, slurm: Path, relative: str, key: str) -> None:
    a = (
        pd.read_parquet(local / relative)
        if relative.endswith("parquet")
        else pd.read_csv(local / relative)
    )
    b = (
        pd.read_parquet(slurm / relative)
        if relative.endswith("parquet")
        else pd.read_csv(slurm / relative)
    )
    a, b = (t.sort_values(key).reset_index(drop=True) for t in (a, b))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_demo_on_slurm_matches_local_and_resumes_after_scancel(tiny_model, tmp_path):
    config = slurm_config(tiny_model)
    local = workflow_dir(tmp_path / "local", config)
    slurm = workflow_dir(tmp_path / "slurm", config)

    # The Slurm run starts first; the local reference run overlaps with its queueing.
    first = snakemake(slurm, *workflow_args(slurm), "--retries", "0", wait=False)
    reference = snakemake(local, *workflow_args(local), slurm=False, wait=False)
    done_before = cancel_mid_shard(slurm, first, shard=0)
    assert done_before

    second = snakemake(slurm, *workflow_args(slurm))
    assert_ok(second)
    log = (slurm / "logs/generate/tiny/synthetic/shard-0.log").read_text()
    resumed = [int(n) for n in re.findall(r"10 items, (\d+) already done", log)]
    assert resumed and resumed[-1] >= len(done_before), log
    shard = pd.read_parquet(slurm / SHARD.format(0))
    assert shard["item_id"].is_unique and len(shard) == 10

    reference.wait()
    assert_ok(reference)
    for shard_index in (0, 1):
        compare_tables(local, slurm, SHARD.format(shard_index), "item_id")
    compare_tables(local, slurm, "results/grades/tiny/synthetic.parquet", "item_id")
    compare_tables(local, slurm, "results/features/tiny/synthetic.parquet", "item_id")
    compare_tables(local, slurm, "results/evaluation/tiny/slices.csv", "slice")


def test_a_job_killed_for_memory_is_retried_with_more(tmp_path):
    workdir = tmp_path / "retry"
    workdir.mkdir()
    proc = snakemake(
        workdir, "--snakefile", str(REPO / "tests" / "slurm" / "Snakefile"), timeout=180
    )
    assert_ok(proc)
    attempts = (workdir / "attempts.log").read_text().split("\n")
    requested = [line.split() for line in attempts if line.strip()]
    # ci-slurm: mem_mb = 1000 * attempt; Slurm's allocation (scontrol) follows the request
    assert requested == [["1000", "mem=1000M"], ["2000", "mem=2000M"]]
    assert (workdir / "flaky.txt").read_text().strip() == "2000"
