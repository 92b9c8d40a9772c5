"""Benchmark of ``entropy-sentinel score``: responses per second on a large synthetic traffic log,
against a per-record Python loop (json.loads, features.response_features and one predict per
record) measured in the same run.

    .venv/bin/python bench/score.py [--records 100000] [--tokens 8] [--baseline-records 2000]

The log holds chat completions shaped like llama-server's (top-20 log-probs per token, ids,
bytes), wrapped in records with a tenant (the slice key) and a time. The estimator is the
demo's design (random forest, sigmoid calibration, 17 features) fitted on synthetic responses.
Both paths run on one core (BLAS and Arrow limited to one thread). The target is 20,000
responses/s for the whole command: read, features, p(correct), per-slice estimates.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from traffic_logs import synthetic_response  # noqa: E402

from entropy_sentinel.estimate.classifier import EntropySentinel  # noqa: E402
from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec, response_features  # noqa: E402
from entropy_sentinel.serve.logs import LogFormat, read_log  # noqa: E402
from entropy_sentinel.serve.monitor import score_logs  # noqa: E402
from entropy_sentinel.serve.scoring import batch_features, slice_table  # noqa: E402

FORMAT = LogFormat("response", "tenant", "time", "raw")
TENANTS = ("alpha", "beta", "gamma", "delta")


def write_traffic(path: Path, records: int, tokens: int, pool: int = 2000) -> None:
    """``records`` log lines; response bodies are drawn from a pool of ``pool`` distinct ones."""
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps(synthetic_response(rng, int(rng.integers(1, 2 * tokens)), created=i))
        for i in range(pool)
    ]
    with open(path, "w") as out:
        for i in range(records):
            head = f'{{"time": {1_767_225_600 + i}, "tenant": "{TENANTS[i % 4]}", "response": '
            out.write(head + bodies[i % pool] + "}\n")


def fit_estimator(path: Path, spec: FeatureSpec):
    log = path.with_suffix(".train.jsonl")
    write_traffic(log, 2000, 8, pool=2000)
    features = batch_features(read_log(log, FORMAT, spec.k), spec)
    rng = np.random.default_rng(1)
    correct = rng.random(len(features)) < 1 / (1 + np.exp(-(4 - 4 * features["mean"])))
    est = EntropySentinel("random_forest", calibrate=True, balance=True, features="17D")
    return est.fit(features, correct.astype(int), feature_spec=spec)


def per_record_loop(path: Path, est, n: int) -> tuple[float, dict]:
    """The naive scorer: one record at a time, through features.py and the estimator."""
    started = time.perf_counter()
    sums: dict[str, list[float]] = {}
    with open(path) as lines:
        for _, line in zip(range(n), lines, strict=False):
            record = json.loads(line)
            content = record["response"]["choices"][0]["logprobs"]["content"]
            topk = np.array([[t["logprob"] for t in step["top_logprobs"]] for step in content])
            sampled = np.array([step["logprob"] for step in content])
            features = response_features(topk, sampled, est.feature_spec_)
            row = pd.DataFrame([features], columns=list(FEATURE_NAMES))
            sums.setdefault(record["tenant"], []).append(float(est.p_correct(row)[0]))
    elapsed = time.perf_counter() - started
    return n / elapsed, {k: float(np.mean(v)) for k, v in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=8, help="mean tokens per response")
    parser.add_argument("--baseline-records", type=int, default=2000)
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    spec = FeatureSpec(k=20, logprobs_mode="raw")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "traffic.jsonl"
        write_traffic(log, args.records, args.tokens)
        size_mb = log.stat().st_size / 1e6
        est = fit_estimator(Path(tmp) / "est", spec)

        started = time.perf_counter()
        scored, skipped = score_logs(est, [log], FORMAT)
        slices = slice_table(est, scored)
        total = time.perf_counter() - started
        # the stages, timed again one by one
        t0 = time.perf_counter()
        batch = read_log(log, FORMAT, 20)
        t1 = time.perf_counter()
        features = batch_features(batch, spec)
        t2 = time.perf_counter()
        est.p_correct(features)
        t3 = time.perf_counter()

        baseline_rate, baseline_slices = per_record_loop(log, est, args.baseline_records)
        check = scored.iloc[: args.baseline_records].groupby("slice")["p_correct"].mean()
        assert np.allclose(check.to_dict()[TENANTS[0]], baseline_slices[TENANTS[0]])

    rate = len(scored) / total
    result = {
        "records": args.records,
        "log_mb": round(size_mb, 1),
        "tokens_per_record": round(float(batch.meta["n_tokens"].mean()), 2),
        "score_records_per_s": round(rate),
        "stages_s": {
            "read_jsonl": round(t1 - t0, 2),
            "features": round(t2 - t1, 2),
            "predict": round(t3 - t2, 2),
        },
        "read_mb_per_s": round(size_mb / (t1 - t0), 1),
        "after_read_records_per_s": round(args.records / (t3 - t1)),
        "per_record_loop_records_per_s": round(baseline_rate, 1),
        "ratio_vs_loop": round(rate / baseline_rate, 1),
        "target_records_per_s": 20_000,
        "meets_target": rate >= 20_000,
        "slices": len(slices) - 1,
        "skipped": skipped,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
