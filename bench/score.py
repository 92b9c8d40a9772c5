"""Benchmark of scoring real-shaped traffic: MB/s against a plain ``json.loads`` pass over the
same file, measured in the same run, and peak memory on a log and one ten times its size.

    .venv/bin/python bench/score.py [--mb 600] [--scale 10] [--tokens 250]

The records are what llama-server writes for a chat completion with ``logprobs: true,
top_logprobs: 20``: about 250 tokens per response, each with its id, text, bytes and log-prob,
and 20 top entries of the same four fields (about 0.5 MB a line), wrapped in log records with
a tenant (the slice key) and a time. Each scoring run is a fresh process (``--child``) that
does what ``entropy-sentinel score`` does: load a saved estimator, read and score the log in
batches (``serve.monitor.score_logs``), estimate each slice. Its peak memory is the child's
maximum resident set (``resource.getrusage(RUSAGE_CHILDREN)``). Targets (issue 18): at least
2x the ``json.loads`` pass, peak memory flat in the log's size and at most 600 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from traffic_logs import synthetic_response  # noqa: E402

TENANTS = ("alpha", "beta", "gamma", "delta")
# token texts of a real vocabulary: spaces, multi-byte UTF-8, newlines (escaped in JSON)
WORDS = (" the", " of", "ing", " model", " accuracy", "\n", " é", "数据", " 42", ".", " x", "ly")
ARGS = ["--response-field", "response", "--slice-field", "tenant", "--time-field", "time"]


def real_response(rng: np.random.Generator, steps: int, created: int) -> dict:
    """A chat completion as llama-server writes it: ids, token text and bytes everywhere."""
    body = synthetic_response(rng, steps, created=created)
    for step in body["choices"][0]["logprobs"]["content"]:
        for entry in (step, *step["top_logprobs"]):
            word = WORDS[entry["id"] % len(WORDS)]
            entry.update(id=entry["id"] * 6151 + 13, token=word, bytes=list(word.encode()))
    body["choices"][0]["message"]["content"] = "The answer is 42."
    return body


def write_traffic(path: Path, megabytes: float, tokens: int, pool: int = 64) -> int:
    """About ``megabytes`` of log lines; bodies are drawn from ``pool`` distinct responses."""
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps(real_response(rng, int(rng.integers(tokens * 4 // 5, tokens * 6 // 5)), i))
        for i in range(pool)
    ]
    written, n = 0, 0
    with open(path, "w") as out:
        while written < megabytes * 1e6:
            head = f'{{"time": {1_767_225_600 + 60 * n}, "tenant": "{TENANTS[n % 4]}", '
            line = head + f'"response": {bodies[n % pool]}}}\n'
            out.write(line)
            written += len(line.encode())
            n += 1
    return n


def save_estimator(path: Path) -> None:
    """The demo's design (random forest, sigmoid calibration, 17 features), fitted on
    synthetic responses and saved as skops, as the workflow saves one."""
    from traffic_logs import write_log

    from entropy_sentinel.estimate.classifier import EntropySentinel
    from entropy_sentinel.features.compute import FeatureSpec
    from entropy_sentinel.serve.logs import LogFormat, read_log
    from entropy_sentinel.serve.scoring import batch_features

    spec = FeatureSpec(k=20, logprobs_mode="raw")
    log = write_log(path.with_suffix(".train.jsonl"), 2000, seed=1, steps=(20, 200))
    features = batch_features(read_log(log, LogFormat("response", "tenant", "time"), 20), spec)
    rng = np.random.default_rng(1)
    correct = rng.random(len(features)) < 1 / (1 + np.exp(-(4 - 4 * features["mean"])))
    est = EntropySentinel("random_forest", calibrate=True, balance=True, features="17D")
    est.fit(features, correct.astype(int), feature_spec=spec).save(path)


def json_pass(path: Path, loads) -> float:
    """Seconds for one ``loads`` of every line, as a reader that keeps nothing does."""
    started = time.perf_counter()
    with open(path, "rb") as lines:
        for raw in lines:
            loads(raw)
    return time.perf_counter() - started


def child(log: Path, estimator: Path) -> None:
    """One scoring run in this fresh process: what ``entropy-sentinel score`` does."""
    from entropy_sentinel.serve.cli import _estimator
    from entropy_sentinel.serve.logs import LogFormat
    from entropy_sentinel.serve.monitor import score_logs
    from entropy_sentinel.serve.scoring import slice_table

    est = _estimator(estimator)
    ready, ready_at = time.perf_counter(), time.time()
    fmt = LogFormat("response", "tenant", "time", logprobs_mode="raw")
    scored, skipped = score_logs(est, [log], fmt)
    slices = slice_table(est, scored)
    elapsed = time.perf_counter() - ready
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "score_s": elapsed,
                "responses": len(scored),
                "tokens": int(scored["n_tokens"].sum()),
                "skipped": sum(skipped.values()),
                "slices": len(slices) - 1,
                "ready_at": ready_at,  # imports and the estimator loaded
                "child_maxrss_mb": usage.ru_maxrss / 1024,
            }
        )
    )


def run_child(log: Path, estimator: Path) -> dict:
    spawned = time.time()
    run = subprocess.run(
        [sys.executable, __file__, "--child", str(log), str(estimator)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode:
        sys.exit(f"the scoring run failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout.splitlines()[-1])
    result["peak_mb"] = round(result.pop("child_maxrss_mb"), 1)
    result["ready_s"] = result.pop("ready_at") - spawned
    return result


def startup_s(*args) -> float:
    """Wall seconds of one ``entropy-sentinel`` command, as a user runs it."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "entropy_sentinel.serve.cli", *args], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=600, help="size of the small log")
    parser.add_argument("--scale", type=int, default=10, help="the large log is this many times")
    parser.add_argument("--tokens", type=int, default=250, help="mean tokens per response")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import orjson

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        estimator = tmp / "estimator.skops"
        save_estimator(estimator)
        small, large = tmp / "small.jsonl", tmp / "large.jsonl"
        records = write_traffic(small, args.mb, args.tokens)
        size_mb = small.stat().st_size / 1e6
        json_s = json_pass(small, json.loads)
        orjson_s = json_pass(small, orjson.loads)
        scored = run_child(small, estimator)
        inspect_s = startup_s("inspect", str(estimator))
        help_s = startup_s("--help")
        results = {
            "log_mb": round(size_mb, 1),
            "responses": records,
            "mb_per_response": round(size_mb / records, 3),
            "tokens_per_response": round(scored["tokens"] / scored["responses"], 1),
            "json_loads_mb_per_s": round(size_mb / json_s, 1),
            "orjson_loads_mb_per_s": round(size_mb / orjson_s, 1),
            "score_mb_per_s": round(size_mb / scored["score_s"], 1),
            "score_responses_per_s": round(scored["responses"] / scored["score_s"], 1),
            "ratio_vs_json_loads": round(json_s / scored["score_s"], 2),
            "target_ratio": 2.0,
            "peak_mb": scored["peak_mb"],
            "ready_to_score_s": round(scored["ready_s"], 2),
            "inspect_s": round(inspect_s, 2),
            "help_s": round(help_s, 2),
        }
        small.unlink()
        if args.scale > 1:
            write_traffic(large, args.mb * args.scale, args.tokens)
            big_mb = large.stat().st_size / 1e6
            big = run_child(large, estimator)
            results.update(
                {
                    f"x{args.scale}_log_mb": round(big_mb, 1),
                    f"x{args.scale}_score_mb_per_s": round(big_mb / big["score_s"], 1),
                    f"x{args.scale}_peak_mb": big["peak_mb"],
                    "peak_growth": round(big["peak_mb"] / scored["peak_mb"], 2),
                }
            )
        results["target_peak_mb"] = 600
        results["meets_targets"] = (
            results["ratio_vs_json_loads"] >= 2.0
            and max(results["peak_mb"], results.get(f"x{args.scale}_peak_mb", 0)) <= 600
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one core, as the json.loads pass
    main()
