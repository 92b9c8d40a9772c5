"""End to end: the whole DAG through the Snakemake API, on the tiny model and a few items."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from entropy_sentinel.features.compute import FEATURE_NAMES
from entropy_sentinel.provenance import read_provenance

REPO = Path(__file__).resolve().parents[1]


FIVE_DOMAINS = ["sum_small", "sum_two_digit", "word_one_step", "word_two_step", "word_distractors"]


def five_domain_demo() -> dict:
    """The demo config on five of its domains, trained on the easiest and the hardest: the
    workflow tests' base (fewer items than the demo's eight domains)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["benchmarks"]["synthetic"]["domains"] = list(FIVE_DOMAINS)
    config["estimator"]["train_slices"] = ["sum_small", "word_distractors"]
    return config


def tiny_config(model_dir: Path) -> dict:
    config = five_domain_demo()
    config["models"] = {"tiny": {"source": "local", "path": str(model_dir)}}
    config["benchmarks"]["synthetic"].update(n_per_domain=6, seed=1)
    config["generation"]["shard_size"] = 16
    config["generation"]["chunk_size"] = 4
    config["generation"]["settings"].update(max_new_tokens=12, batch_size=8)
    config["estimator"]["study_max_train_slices"] = 1
    return config


def run_snakemake(workdir: Path, targets=None, dryrun: bool = False, forcerun=()) -> set[str]:
    """Run the workflow in ``workdir``; returns the names of the rules that were scheduled."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=2, resources={"gpu": 1}),
            config_settings=ConfigSettings(configfiles=[workdir / "config" / "config.yaml"]),
            storage_settings=StorageSettings(),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        dag = workflow.dag(DAGSettings(targets=targets or set(), forcerun=set(forcerun)))
        scheduled: set[str] = set()
        if dryrun:
            dag.execute_workflow(executor="dryrun", execution_settings=ExecutionSettings())
        else:
            dag.execute_workflow(executor="local", execution_settings=ExecutionSettings())
        return scheduled


def make_workdir(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


@pytest.mark.slow
def test_workflow_end_to_end(tiny_model, tmp_path):
    workdir = make_workdir(tmp_path, tiny_config(tiny_model))
    run_snakemake(workdir)

    summary = (workdir / "results" / "summary.md").read_text()
    assert "tiny" in summary
    # time and peak memory per rule, from the benchmark: files of the jobs before the summary
    assert "## Where the time and memory went" in summary
    for rule, jobs in (("generate", 2), ("grade", 1), ("features", 1), ("evaluate", 1)):
        assert f"| {rule} | {jobs} | " in summary
    shards = sorted((workdir / "results" / "generations" / "tiny" / "synthetic").glob("*.parquet"))
    assert len(shards) == 2  # 30 items, shards of 16
    generations = pd.concat([pd.read_parquet(s) for s in shards])
    assert generations["item_id"].is_unique and len(generations) == 30
    assert all(
        len(steps) == n
        for steps, n in zip(generations["topk_logprobs"], generations["n_tokens"], strict=True)
    )
    assert all(len(step) == 20 for steps in generations["topk_logprobs"] for step in steps)
    provenance = read_provenance(shards[0])
    assert provenance["generation_settings"]["top_k_logprobs"] == 20
    assert provenance["backend"] == "transformers" and "torch" in provenance["versions"]

    features = pd.read_parquet(workdir / "results" / "features" / "tiny" / "synthetic.parquet")
    assert set(FEATURE_NAMES) <= set(features.columns)
    assert set(features["split"]) == {"train", "test"}
    split = json.loads((workdir / "resources" / "benchmarks" / "synthetic.split.json").read_text())
    assert set(features.loc[features["split"] == "test", "item_id"]) == set(split["test"])

    slices = pd.read_csv(workdir / "results" / "evaluation" / "tiny" / "slices.csv")
    assert len(slices) == 5
    assert slices["estimated_accuracy"].between(0, 1).all()
    metrics = json.loads((workdir / "results" / "evaluation" / "tiny" / "metrics.json").read_text())
    assert "mae" in metrics

    # Outputs are the cache: a second run has nothing to do and rewrites nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.parquet")}
    run_snakemake(workdir)
    assert stamps == {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.parquet")}

    # The benchmark table rebuilt with the same content reruns everything after it, and
    # Snakemake deletes the shards first: they come back from .store, not generated again.
    run_snakemake(workdir, forcerun={"prepare_benchmark"})
    pd.testing.assert_frame_equal(pd.concat([pd.read_parquet(s) for s in shards]), generations)
    for shard in shards:
        log = workdir / "logs/generate/tiny/synthetic" / f"{shard.stem}.log"
        assert "reused" in log.read_text() and "generated" not in log.read_text()


def snakemake_dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake -n`` as a user runs it, in ``workdir`` (its config/config.yaml is the demo's)."""
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_no_job_was_planned(workdir: Path, run: subprocess.CompletedProcess, message: str):
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "Invalid configuration" in output and re.search(message, output), output
    assert "Job stats" not in output and "rule " not in output  # the DAG was never built
    assert not any((workdir / d).exists() for d in ("results", "resources", "logs"))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (
            lambda c: c["generation"]["settings"].update(max_new_tokens="many"),
            "generation.settings.max_new_tokens: 'many' is not of type 'integer'",
        ),
        (lambda c: c["benchmarks"].update(x={"source": "ftp"}), "benchmarks.x.source: 'ftp'"),
        (lambda c: c["models"]["tiny"].update(source="torrent"), "models.tiny.source"),
        (
            lambda c: c["benchmarks"].update(x={"source": "registry", "name": "nope"}),
            "benchmarks.x.name: unknown benchmark 'nope'",
        ),
        (
            lambda c: c["estimator"].update(train_slices=["no_such_domain"]),
            r"estimator.train_slices: \['no_such_domain'\]",
        ),
        (
            lambda c: c["models"].update(g={"source": "gguf", "path": "absent.gguf"}),
            "models.g.path: no such file absent.gguf",
        ),
        (
            lambda c: c["models"].update(d={"source": "local", "path": "absent"}),
            "models.d.path: absent does not exist",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tiny_model, tmp_path, mutate, message):
    config = tiny_config(tiny_model)
    mutate(config)
    workdir = make_workdir(tmp_path, config)
    assert_no_job_was_planned(workdir, snakemake_dry_run(workdir), message)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "\n  tiny:\n    source: hub\n    repo_id: a/b\n",
            r"config\.yaml:\d+:3: duplicate key models\.tiny",
        ),
        ("\n  broken: [1\n", r"config\.yaml:\d+:\d+: YAML syntax error"),
    ],
)
def test_bad_yaml_fails_before_any_job(tiny_model, tmp_path, text, message):
    """The demo config path (no --configfile): Snakemake's own loader would hide both."""
    workdir = make_workdir(tmp_path, tiny_config(tiny_model))
    path = workdir / "config" / "config.yaml"
    path.write_text(path.read_text().replace("models:", "models:" + text, 1))
    assert_no_job_was_planned(workdir, snakemake_dry_run(workdir), message)


def test_dry_run_lists_pending_jobs(tiny_model, tmp_path):
    workdir = make_workdir(tmp_path, tiny_config(tiny_model))
    run = snakemake_dry_run(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr
    stats = job_counts(run.stdout)
    # 30 items in shards of 16: two generation jobs, then one job per later stage
    assert stats["generate"] == 2 and stats["grade"] == 1 and stats["features"] == 1
    assert stats["evaluate"] == 1 and stats["summary"] == 1
    assert not (workdir / "results").exists()


STAGES = ("resources/models", "resources/benchmarks", "results/generations", "results/grades")
STAGES += ("results/features", "results/evaluation", "results/summary.md", "results/report")


def job_counts(output: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.MULTILINE)}


def test_a_missing_intermediate_is_rebuilt_with_everything_made_from_it(tiny_model, tmp_path):
    """The state Ctrl-C during `snakemake --forcerun grade` leaves: Snakemake deletes the killed
    job's output, the features made from the old grades stay. Plain Snakemake then says
    "Nothing to be done"; the workflow must rebuild the grades and everything downstream."""
    workdir = make_workdir(tmp_path, tiny_config(tiny_model))
    planned = snakemake_dry_run(workdir).stdout
    outputs = [
        f for line in re.findall(r"^\s+output: (.+)$", planned, re.M) for f in line.split(", ")
    ]
    outputs.sort(key=lambda f: next(n for n, stage in enumerate(STAGES) if f.startswith(stage)))
    for n, name in enumerate(outputs):  # a finished run: each file newer than its inputs
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text("")
        os.utime(workdir / name, (1e9 + n, 1e9 + n))
    # The files were not written by Snakemake, so it has no provenance records to compare.
    assert "Nothing to be done" in snakemake_dry_run(workdir, "--rerun-triggers", "mtime").stdout

    (workdir / "results" / "grades" / "tiny" / "synthetic.parquet").unlink()
    rerun = snakemake_dry_run(workdir, "--rerun-triggers", "mtime")
    assert "Rebuilding 1 missing file(s)" in rerun.stderr
    counts = job_counts(rerun.stdout)
    assert {
        rule: counts.get(rule, 0) for rule in ("generate", "grade", "features", "evaluate")
    } == {
        "generate": 0,
        "grade": 1,
        "features": 1,
        "evaluate": 1,
    }
    assert counts["summary"] == 1


def test_reordered_config_keys_leave_nothing_to_do(tiny_model, tmp_path):
    config = tiny_config(tiny_model)
    config["benchmarks"]["synthetic"]["n_per_domain"] = 2
    workdir = make_workdir(tmp_path, config)
    run_snakemake(workdir, targets={"results/features/tiny/synthetic.parquet"})
    stamps = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.parquet")}

    def reversed_keys(value):
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        return value

    (workdir / "config" / "config.yaml").write_text(
        yaml.safe_dump(reversed_keys(config), sort_keys=False)
    )
    run_snakemake(workdir, targets={"results/features/tiny/synthetic.parquet"})
    assert stamps == {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*.parquet")}


@pytest.mark.slow
def test_sweep_rules_through_the_workflow(tiny_model, tmp_path):
    """sweep_chunk, sweep_merge and deployments as `snakemake` runs them. A random tiny model
    answers nothing right, so the features are simulated ones with a known accuracy per domain,
    in place of a finished run's (upstream files exist and are older: nothing reruns them)."""
    from entropy_sentinel.features.compute import PROVENANCE_KEY, FeatureSpec
    from entropy_sentinel.features.simulate import synthetic_features
    from entropy_sentinel.provenance import write_parquet

    config = tiny_config(tiny_model)
    config["sweep"] = {
        "enabled": True,
        "classifiers": ["logistic_regression"],
        "calibrate": [False],
        "balance": [False],
        "feature_sets": ["3D"],
        "max_train_slices": 1,
        "chunks": 2,
        "deployments": {"small": ["sum_small", "word_distractors"]},
    }
    config["estimator"]["classifier"] = "logistic_regression"  # the quickest evaluate rule
    workdir = make_workdir(tmp_path, config)
    planned = snakemake_dry_run(workdir).stdout
    upstream = [
        f
        for line in re.findall(r"^\s+output: (.+)$", planned, re.M)
        for f in line.split(", ")
        if f.startswith(STAGES[:4])
    ]
    for name in upstream:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text("")
        os.utime(workdir / name, (1e9, 1e9))
    domains = config["benchmarks"]["synthetic"]["domains"]
    shifts = dict(zip(domains, (-1.0, -0.5, 0.0, 0.5, 1.0), strict=True))
    features = synthetic_features(shifts, n_per_slice=60, model="tiny")
    spec = {PROVENANCE_KEY: FeatureSpec().as_dict(), "generation": {"backend": "simulated"}}
    write_parquet(features, workdir / "results/features/tiny/synthetic.parquet", spec)

    targets = ["results/sweep/estimators.csv", "results/deployments/tiny/manifest.json"]
    run = subprocess.run(
        [str(REPO / ".venv/bin/snakemake"), *targets, "-s", str(REPO / "Snakefile")]
        + ["--cores", "2", "--rerun-triggers", "mtime"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not re.search(r"rule (generate|grade|features)\b", run.stdout + run.stderr)
    estimators = pd.read_csv(workdir / "results/sweep/estimators.csv")
    assert set(estimators["llm"]) == {"tiny"}
    assert {"ES", "ATC[max]", "Selected"} <= set(estimators["estimator"])
    assert estimators["mae"].between(0, 1).all() and estimators["coverage"].between(0, 1).all()
    sweep = pd.read_csv(workdir / "results/sweep/stem_classifier_evaluation_results.csv")
    assert len(sweep) and (sweep["llm"] == "tiny").all()
    manifest = json.loads((workdir / "results/deployments/tiny/manifest.json").read_text())
    assert {"small", "small-selected"} <= set(json.dumps(manifest).replace('"', " ").split())
