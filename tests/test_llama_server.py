"""The openai backend and the CLI against a real llama.cpp server on 127.0.0.1.

The server (tests/llama_server/build.sh builds it; .ci/run does so in CI) serves the demo's
SmolLM2-135M GGUF and is stopped by its PID. Without the binary these tests skip and say why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from llama_server.server import SERVED_NAME, SMOLLM2, LlamaServer, missing_reason, smollm2_gguf

from entropy_sentinel.data.synthetic import generate_items
from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec, response_features
from entropy_sentinel.generate.backends import GENERATION_COLUMNS, GenerationSettings, load_backend
from entropy_sentinel.generate.backends.openai_backend import convert_response
from entropy_sentinel.generate.shard import parts_dir, run_items
from entropy_sentinel.provenance import read_provenance

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "entropy-sentinel"

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LlamaServer(smollm2_gguf(), log=tmp_path_factory.mktemp("llama") / "server.log") as s:
        yield s
    assert s.process.poll() is not None  # stopped by its PID


def options(server, **changes) -> dict:
    return {
        "base_url": server.base_url,
        "model": SERVED_NAME,
        "api_key_env": None,
        "concurrency": 2,
        "extra_body": {"cache_prompt": False},  # log-probs independent of the prompt cache
        **changes,
    }


GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0, top_k_logprobs=20, seed=7)


def items(n_per_domain: int = 2) -> pd.DataFrame:
    from test_workflow import FIVE_DOMAINS

    return pd.DataFrame(generate_items(n_per_domain, seed=3, domains=FIVE_DOMAINS))


def test_rows_provenance_and_resume(server, tmp_path):
    # One request at a time: two batched together shift log-probs by up to ~0.03 nats (the
    # batch's composition changes the arithmetic), which would hide a resume bug.
    backend = load_backend("openai", None, GREEDY, options=options(server, concurrency=1))
    provenance = backend.provenance()
    assert provenance["server_model"] and provenance["system_fingerprint"]
    assert SERVED_NAME in provenance["served_models"]
    assert provenance["logprobs_mode"] == "raw" and provenance["server"]["api_key_env"] is None

    todo = items(1)

    class Dies:
        """The backend, killed after three rows (a job interrupted mid-shard)."""

        def __init__(self, inner):
            self.inner, self.render_prompt = inner, inner.render_prompt

        def stream(self, prompts):
            for n, row in enumerate(self.inner.stream(prompts)):
                if n == 3:
                    raise KeyboardInterrupt
                yield row

    out = tmp_path / "shard-0.parquet"
    common = dict(items=todo, chunk_size=2, prompt_style="raw", output=out, metadata=provenance)
    with pytest.raises(KeyboardInterrupt):
        run_items(backend=Dies(backend), **common)
    assert len(pd.concat(map(pd.read_parquet, parts_dir(out).glob("*.parquet")))) == 3
    resumed = run_items(backend=backend, **common)
    fresh = run_items(backend=backend, **{**common, "output": tmp_path / "fresh.parquet"})

    assert list(resumed.columns) == list(GENERATION_COLUMNS) and len(resumed) == len(todo)
    assert resumed["error"].isna().all()
    for row in resumed.itertuples():
        steps = np.stack(row.topk_logprobs)
        assert steps.shape == (row.n_tokens, 20) and (np.diff(steps, axis=1) <= 0).all()
        assert len(row.token_ids) == len(row.sampled_logprobs) == row.n_tokens
        assert all(row.sampled_in_topk)  # greedy: the sampled token is the most likely one
        np.testing.assert_allclose(row.sampled_logprobs, steps[:, 0], atol=1e-6)
    # greedy and no prompt cache: a resumed shard equals an uninterrupted one
    a, b = resumed.set_index("item_id"), fresh.set_index("item_id").loc[resumed["item_id"]]
    assert list(a["token_ids"].map(list)) == list(b["token_ids"].map(list))
    np.testing.assert_allclose(
        np.concatenate(a["sampled_logprobs"].to_list()),
        np.concatenate(b["sampled_logprobs"].to_list()),
    )
    assert read_provenance(out)["system_fingerprint"] == provenance["system_fingerprint"]


def test_per_item_seeds_reproduce_sampling(server):
    sampled = GREEDY.replace(temperature=1.0, max_new_tokens=12)
    backend = load_backend("openai", None, sampled, options=options(server))
    prompt = backend.render_prompt([{"role": "user", "content": "Tell me a story."}])
    first = backend.generate(["x", "y"], [prompt, prompt])
    again = backend.generate(["y", "x"], [prompt, prompt])
    assert first[0]["token_ids"] == again[1]["token_ids"]  # item x, sent in another order
    assert first[1]["token_ids"] == again[0]["token_ids"]
    assert first[0]["token_ids"] != first[1]["token_ids"]  # two items: two seeds


def test_completions_endpoint_and_errors(server, tmp_path):
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp_path / "tok")
    backend = load_backend(
        "openai", str(tmp_path / "tok"), GREEDY, options=options(server, endpoint="completions")
    )
    chat = load_backend("openai", None, GREEDY, options=options(server))
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    text = backend.render_prompt(messages)
    assert isinstance(text, str) and "2 + 3" in text
    row = backend.generate(["a"], [text])[0]
    assert row["error"] is None and len(row["topk_logprobs"][0]) == 20
    same = chat.generate(["a"], [chat.render_prompt(messages)])[0]
    assert row["token_ids"] == same["token_ids"]  # the same template, rendered here or there

    nowhere = options(server, base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.1)
    wrong = load_backend("openai", None, GREEDY, options=nowhere)
    failed = wrong.generate(["a"], [chat.render_prompt(messages)])[0]
    assert failed["finish_reason"] == "error" and "Connection" in failed["error"]


def write_server_log(server, path: Path, n_per_domain: int = 4) -> pd.DataFrame:
    """Traffic as a service would log it: one record per response, with tenant and time."""
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="unused")
    benchmark = items(n_per_domain)
    with open(path, "w") as log:
        for n, item in enumerate(benchmark.itertuples()):
            response = client.chat.completions.create(
                model=SERVED_NAME,
                messages=[{"role": "user", "content": item.question}],
                max_tokens=24,
                temperature=0.7,
                seed=n,
                logprobs=True,
                top_logprobs=20,
                extra_body={"cache_prompt": False},
            )
            record = {
                "time": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(1_767_225_600 + n * 900)),
                "tenant": item.domain,
                "response": response.model_dump(),
            }
            log.write(json.dumps(record) + "\n")
    return benchmark


def test_cli_on_a_log_written_by_the_server(server, tmp_path):
    from test_cli import fit_estimator

    from entropy_sentinel.estimate.classifier import load_estimator

    log = tmp_path / "traffic.jsonl"
    write_server_log(server, log)
    est_path = fit_estimator(tmp_path / "estimator.skops")
    wrapped = ["--response-field", "response", "--slice-field", "tenant", "--time-field", "time"]
    run = subprocess.run(
        [CLI, "score", log, "--estimator", est_path, *wrapped, "--logprobs-mode", "raw",
         "--out", tmp_path / "scored"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    slices = pd.read_csv(tmp_path / "scored" / "slices.csv").set_index("slice")

    # the in-process path: the backend's own conversion, then features.py one row at a time
    est = load_estimator(est_path)
    rows = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        row = convert_response("x", record["response"], GREEDY, [])
        features = response_features(
            row["topk_logprobs"], row["sampled_logprobs"], FeatureSpec(),
            sampled_in_topk=row["sampled_in_topk"],
        )  # fmt: skip
        rows.append({"tenant": record["tenant"], **features})
    table = pd.DataFrame(rows)
    for tenant, group in table.groupby("tenant"):
        expected = est.estimate(group[list(FEATURE_NAMES)], est.feature_spec_)
        got = slices.loc[tenant]
        assert got["n"] == expected.n
        np.testing.assert_allclose(
            [got["point"], got["low"], got["high"]],
            [expected.point, expected.low, expected.high],
            rtol=1e-9,
        )

    monitor = subprocess.run(
        [CLI, "monitor", log, "--estimator", est_path, *wrapped, "--logprobs-mode", "raw",
         "--window", "hour", "--min-responses", "1", "--min-accuracy", "1.01",
         "--out", tmp_path / "monitor"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert monitor.returncode == 3  # every window's upper bound is below 1.01
    alerts = json.loads((tmp_path / "monitor" / "alerts.json").read_text())
    assert len([line for line in monitor.stderr.splitlines() if "ALERT" in line]) == len(alerts)
    assert (tmp_path / "monitor" / "monitor.html").read_text().count("<svg") == 6  # 5 + all


@pytest.mark.slow
def test_demo_end_to_end_with_the_openai_backend(server, tmp_path):
    """The demo config with generation.backend: openai against the local server."""
    from test_workflow import five_domain_demo, make_workdir, run_snakemake

    config = five_domain_demo()
    config["models"] = {SERVED_NAME: dict(SMOLLM2)}  # wheel_dir: the test cache, no download
    config["benchmarks"]["synthetic"]["n_per_domain"] = 8
    config["generation"].update(backend="openai", openai=options(server, concurrency=2))
    config["generation"]["settings"]["max_new_tokens"] = 48
    config["estimator"]["study_max_train_slices"] = 1
    log = tmp_path / "traffic.jsonl"
    write_server_log(server, log, n_per_domain=2)
    config["monitor"] = {
        "traffic": {
            "logs": [str(log)],
            "model": SERVED_NAME,
            "response_field": "response",
            "slice_field": "tenant",
            "time_field": "time",
            "logprobs_mode": "raw",
            "min_responses": 1,
            "min_accuracy": 1.01,  # every window alerts: the alerts are recorded, not fatal
        }
    }
    workdir = make_workdir(tmp_path, config)
    run_snakemake(workdir)

    generations = workdir / "results" / "generations" / SERVED_NAME / "synthetic"
    shards = sorted(generations.glob("shard-*.parquet"))
    rows = pd.concat(map(pd.read_parquet, shards))
    assert len(rows) == 40 and rows["error"].isna().all()
    provenance = read_provenance(shards[0])
    assert provenance["backend"] == "openai" and provenance["system_fingerprint"]
    assert (workdir / "results" / "summary.md").exists()
    monitor = workdir / "results" / "monitor" / "traffic"
    alerts = json.loads((monitor / "alerts.json").read_text())
    windows = pd.read_csv(monitor / "windows.csv")
    assert len(alerts) == len(windows) and (monitor / "monitor.html").exists()
    estimator = workdir / "results" / "evaluation" / SERVED_NAME / "estimator.skops"
    run = subprocess.run(
        [CLI, "score", shards[0], "--estimator", estimator], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


REGIME_A = {"temperature": 0.8, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "max_tokens": 24}
REGIME_B = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "max_tokens": 16}


def write_regime_log(server, path: Path, regime: dict, n_per_domain: int, seed: int = 0):
    """Traffic of one regime as a service logs it: its id, tenant, the request body sent and
    the response; returns each response's grade (id -> correct) from the project's grader."""
    from openai import OpenAI

    from entropy_sentinel.grading.rules import grade

    client = OpenAI(base_url=server.base_url, api_key="unused")
    system = regime.get("system")
    grades = {}
    with open(path, "w") as log:
        for n, item in enumerate(items(n_per_domain).itertuples()):
            messages = [{"role": "user", "content": item.question}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            sampler = {k: v for k, v in regime.items() if k != "system"}
            request = {"model": SERVED_NAME, "messages": messages, "logprobs": True,
                       "top_logprobs": 20, "seed": seed + n, **sampler}  # fmt: skip
            response = client.chat.completions.create(
                **{k: v for k, v in request.items() if k not in ("top_k", "min_p")},
                extra_body={"top_k": regime["top_k"], "min_p": regime["min_p"],
                            "cache_prompt": False},
            )  # fmt: skip
            rid = f"{path.stem}-{n}"
            record = {"id": rid, "tenant": item.domain, "request": request,
                      "response": response.model_dump()}  # fmt: skip
            log.write(json.dumps(record) + "\n")
            text = response.choices[0].message.content
            grades[rid] = grade(text, item.reference, item.answer_type).correct
    return grades


def test_train_label_score_and_regime_check_on_two_regimes(server, tmp_path):
    """The deployment path a team takes, through the CLI on real server traffic: train from a
    log and its labels, score the same regime (its settings match) and another one (system
    prompt, sampler and token limit changed: shifted, and the interval widens or is
    withheld), propose responses to label, and fold those labels in with PPI++."""
    wrapped = ["--response-field", "response", "--slice-field", "tenant", "--id-field", "id",
               "--request-field", "request", "--logprobs-mode", "raw"]  # fmt: skip
    train_log, same_log, other_log = (tmp_path / f"{n}.jsonl" for n in ("a", "a2", "b"))
    grades = write_regime_log(server, train_log, REGIME_A, n_per_domain=8)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {"id": list(grades), "correct": [None if g is None else int(g) for g in grades.values()]}
    ).to_csv(labels, index=False)
    assert 2 <= sum(g is True for g in grades.values()) <= len(grades) - 2
    est = tmp_path / "est.skops"

    train = subprocess.run(
        [CLI, "train", train_log, "--labels", labels, *wrapped, "--out", est,
         "--set", "features=3D"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "of 5 slices" in train.stdout and "temperature=0.8" in train.stdout
    meta = json.loads(subprocess.run([CLI, "inspect", est, "--json"], capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    trained = meta["regime"]["settings"]
    assert trained["top_p"] == 1.0 and trained["max_tokens"] == 24 and trained["top_k"] == 0
    assert trained["system_prompt_sha256"] is None and trained["model"] == SERVED_NAME

    write_regime_log(server, same_log, REGIME_A, n_per_domain=2, seed=100)
    other = write_regime_log(
        server, other_log, {**REGIME_B, "system": "Answer briefly."}, n_per_domain=4, seed=200
    )

    def score(log: Path, out: Path, *extra) -> tuple[pd.DataFrame, dict, str]:
        run = subprocess.run(
            [CLI, "score", log, "--estimator", est, *wrapped, "--out", out, *map(str, extra)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        summary = json.loads((out / "summary.json").read_text())
        return pd.read_csv(out / "slices.csv").set_index("slice"), summary, run.stderr

    same, summary, stderr = score(same_log, tmp_path / "same")
    assert list(same.columns[:6]) == ["n", "n_labels", "point", "low", "high", "regime"]
    assert (same["regime"] == "same").all() and "shifted" not in stderr
    assert summary["regime"]["slices"]["sum_small"]["features"] == "unknown"  # 2 < min_rows

    shifted, summary, stderr = score(other_log, tmp_path / "other")
    assert (shifted["regime"] == "shifted").all()
    differ = summary["regime"]["slices"]["sum_small"]["settings_differ"]
    assert {"system_prompt_sha256", "top_p", "top_k", "min_p", "max_tokens"} <= set(differ)
    assert "temperature" not in differ and "regime: slice sum_small is shifted" in stderr
    widen_by = meta["regime"]["widen_by"]
    assert widen_by > 0 and (shifted["covers"].str.contains("widened by")).all()
    withheld, _, _ = score(other_log, tmp_path / "withheld", "--under-shift", "withhold")
    assert withheld["low"].isna().all() and withheld["high"].isna().all()
    np.testing.assert_allclose(withheld["point"], shifted["point"])

    # a few labels for the shifted regime: propose, fill in from the grader, fold in
    plan = tmp_path / "to-label.csv"
    run = subprocess.run([CLI, "label", tmp_path / "other", "--per-slice", "3", "--out", plan],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    todo = pd.read_csv(plan)
    assert todo.groupby("slice").size().eq(3).all()
    todo["correct"] = [None if other[i] is None else int(other[i]) for i in todo["id"]]
    todo.to_csv(plan, index=False)
    labelled, summary, _ = score(other_log, tmp_path / "labelled", "--labels", plan)
    graded = todo.dropna(subset=["correct"]).groupby("slice").size()
    assert labelled.loc[graded.index, "n_labels"].tolist() == graded.tolist()
    assert labelled.loc["*", "n_labels"] == graded.sum()
    np.testing.assert_allclose(labelled["label_free_point"], shifted["point"])
    with_ppi = labelled[labelled["method"].fillna("").str.startswith("ppi++")]
    assert len(with_ppi) and (with_ppi["low"] <= with_ppi["point"]).all()
    assert (with_ppi["point"] <= with_ppi["high"]).all()
