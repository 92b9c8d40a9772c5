"""Kill the generation step mid-shard (SIGKILL), rerun it, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from entropy_sentinel.generate.shard import main, parts_dir

SETTINGS = {"max_new_tokens": 24, "temperature": 0.7, "batch_size": 2, "top_k_logprobs": 5}


def _args(model, bench, out) -> list[str]:
    return [
        "--weights", str(model),
        "--benchmark", str(bench),
        "--output", str(out),
        "--chunk-size", "2",
        "--settings", json.dumps(SETTINGS),
        "--threads", "1",
    ]  # fmt: skip


def test_sigkill_then_rerun_equals_uninterrupted(tiny_model, tmp_path):
    bench = tmp_path / "bench.parquet"
    questions = [
        f"What is {n} + {n * 3}? " + "Ben gives away 3 marbles. " * (n % 4) for n in range(20)
    ]
    pd.DataFrame({"item_id": [f"i{n:02d}" for n in range(20)], "question": questions}).to_parquet(
        bench
    )
    out = tmp_path / "killed" / "shard-0.parquet"
    command = [
        sys.executable,
        "-m",
        "entropy_sentinel.generate.shard",
        *_args(tiny_model, bench, out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(parts_dir(out).glob("chunk-*.parquet")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no chunk committed within 120 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not out.exists(), "finished before the kill; make the shard longer"
    assert len(list(parts_dir(out).glob("chunk-*.parquet"))) >= 1

    main(_args(tiny_model, bench, out))  # the rerun (in-process: same code path, faster)

    clean = tmp_path / "clean" / "shard-0.parquet"
    main(_args(tiny_model, bench, clean))
    resumed, reference = pd.read_parquet(out), pd.read_parquet(clean)
    assert resumed["item_id"].is_unique and len(resumed) == 20
    assert list(resumed["item_id"]) == list(reference["item_id"])
    assert resumed["error"].isna().all()
    for a, b in zip(resumed.itertuples(), reference.itertuples(), strict=True):
        assert list(a.token_ids) == list(b.token_ids), a.item_id
        assert np.array_equal(np.stack(a.topk_token_ids), np.stack(b.topk_token_ids))
        np.testing.assert_allclose(np.stack(a.topk_logprobs), np.stack(b.topk_logprobs), atol=1e-5)
        np.testing.assert_allclose(a.sampled_logprobs, b.sampled_logprobs, atol=1e-5)
