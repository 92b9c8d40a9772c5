"""How long `snakemake -n` takes on the paper grid (config/paper.yaml), against the demo config.

Both dry-runs start in an empty directory, so every job is pending (the largest DAG), and each
is timed as a user sees it: a fresh `snakemake` process. The demo dry-run, measured in the same
run, is the baseline, so the ratio holds on a busy or slow machine. Target: paper < 10 s.

    .venv/bin/python bench/dag.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIGS = {"demo": REPO / "config" / "config.yaml", "paper": REPO / "config" / "paper.yaml"}
TARGET_S = 10.0


def dry_run(configfile: Path) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="dag-bench-") as workdir:
        command = [
            SNAKEMAKE,
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            workdir,
            "--configfile",
            str(configfile),
            "--replace-workflow-config",  # the Snakefile's own configfile must not merge in
        ]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dry-run of {configfile} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def job_counts(output: str) -> dict[str, int]:
    stats = output[output.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    outputs: dict[str, str] = {}
    for _ in range(args.repeat):  # interleaved, so load changes hit both alike
        for name, configfile in CONFIGS.items():
            elapsed, outputs[name] = dry_run(configfile)
            times[name].append(elapsed)

    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in CONFIGS:
        counts = job_counts(outputs[name])
        print(
            f"{name:>5}: median {medians[name]:5.2f} s over {args.repeat} "
            f"(min {min(times[name]):.2f} s), {counts.get('total', 0)} jobs"
        )
    ratio = medians["paper"] / medians["demo"]
    print(f"ratio paper/demo: {ratio:.2f}x")
    print(
        "paper jobs per rule: "
        + ", ".join(f"{k}={v}" for k, v in job_counts(outputs["paper"]).items())
    )
    verdict = "OK" if medians["paper"] < TARGET_S else "SLOW"
    print(f"{verdict}: paper-grid dry-run {medians['paper']:.2f} s (target < {TARGET_S:.0f} s)")
    sys.exit(0 if verdict == "OK" else 1)


if __name__ == "__main__":
    main()
