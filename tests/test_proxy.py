"""``entropy-sentinel proxy`` in front of a real llama-server (tests/llama_server/server.py).

The proxy runs as a user runs it (the console script, tests/proxy_server.py). Greedy requests
with a fixed seed and no prompt cache are sent to the server directly and through the proxy;
the client gets the server's content, with the log-probs it asked for and no others. The 500
and timeout cases use a small Starlette upstream on 127.0.0.1 (llama-server cannot be made to
fail on cue). Prometheus is Debian's binary, run here on 127.0.0.1; without it that test skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from llama_server.server import SERVED_NAME, LlamaServer, free_port, missing_reason, smollm2_gguf
from prometheus_client.parser import text_string_to_metric_families
from proxy_server import ProxyServer

CLI = Path(sys.executable).parent / "entropy-sentinel"
REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus")
needs_server = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
QUESTIONS = [
    "What is 2 + 3?",
    "Name a colour.",
    "What is the capital of France?",
    "Count to five.",
    "What is 7 times 6?",
    "Say hello.",
    "Is ice cold?",
    "What is 10 - 4?",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if missing_reason() is not None:
        pytest.skip(missing_reason())
    with LlamaServer(smollm2_gguf(), log=tmp_path_factory.mktemp("llama") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def estimator(tmp_path_factory) -> Path:
    from test_cli import fit_estimator  # k=20, raw log-probs: what llama-server serves

    return fit_estimator(tmp_path_factory.mktemp("est") / "estimator.skops")


def root(server) -> str:
    return server.base_url.removesuffix("/v1")


def chat(question: str, **extra) -> dict:
    return {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "temperature": 0.0,
        "seed": 7,
        "cache_prompt": False,  # log-probs independent of the prompt cache
        **extra,
    }


def completion(prompt: str, **extra) -> dict:
    return {"model": SERVED_NAME, "prompt": prompt, "max_tokens": 12, "temperature": 0.0,
            "seed": 7, "cache_prompt": False, **extra}  # fmt: skip


def events(text: str) -> list[dict]:
    """The JSON chunks of a server-sent event stream, and it must end with [DONE]."""
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def metrics(url: str) -> dict:
    """``{(name, labels...): value}`` of a /metrics page."""
    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            values[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return values


def wait_scored(url: str, n: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values = metrics(url)
        scored = sum(v for k, v in values.items() if k[0] == "entropy_sentinel_scored_total")
        if scored >= n:
            return values
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} responses scored: {values}")


def same_choices(direct: dict, proxied: dict) -> None:
    assert proxied["choices"] == direct["choices"]
    assert proxied["model"] == direct["model"]
    assert proxied["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]


@needs_server
def test_non_streaming_chat_and_completions(server, estimator, tmp_path):
    with ProxyServer(root(server), estimator, tmp_path / "features") as proxy:
        direct = httpx.Client(base_url=root(server), timeout=120)
        proxied = httpx.Client(base_url=proxy.url, timeout=120)
        ask = chat(QUESTIONS[0])
        a = direct.post("/v1/chat/completions", json=ask).json()
        b = proxied.post("/v1/chat/completions", json=ask)
        assert b.status_code == 200 and b.headers["content-type"].startswith("application/json")
        assert "logprobs" not in a["choices"][0]  # what the client asked for: none
        same_choices(a, b.json())

        # a client asking for 3 top log-probs gets 3, the server's values
        three = chat(QUESTIONS[0], logprobs=True, top_logprobs=3)
        a = direct.post("/v1/chat/completions", json=three).json()
        b = proxied.post("/v1/chat/completions", json=three).json()
        steps = b["choices"][0]["logprobs"]["content"]
        assert len(steps) == len(a["choices"][0]["logprobs"]["content"]) >= 1
        assert {len(t["top_logprobs"]) for t in steps} == {3}
        assert b["choices"][0]["message"] == a["choices"][0]["message"]
        for x, y in zip(a["choices"][0]["logprobs"]["content"], steps, strict=True):
            tokens = [t["token"] for t in y["top_logprobs"]]
            assert tokens == [t["token"] for t in x["top_logprobs"]]
            np.testing.assert_allclose(x["logprob"], y["logprob"], atol=1e-4)

        # legacy completions: "logprobs": null when not asked for, as the server writes it
        plain = completion("The capital of France is")
        a = direct.post("/v1/completions", json=plain).json()
        b = proxied.post("/v1/completions", json=plain).json()
        assert b["choices"][0]["logprobs"] is None
        same_choices(a, b)
        models = proxied.get("/v1/models")  # anything else passes through
        assert models.status_code == 200 and models.json() == direct.get("/v1/models").json()
        wait_scored(proxy.url, 3)
    assert proxy.stopped_cleanly()
    (log,) = proxy.feature_logs()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    header, records = lines[0], lines[1:]
    assert header["feature_spec"]["k"] == 20 and header["feature_spec"]["logprobs_mode"] == "raw"
    assert len(records) == 3
    assert {r["settings"]["endpoint"] for r in records} == {"chat", "completions"}
    for record in records:
        assert record["slice"] == "all" and 0 <= record["p"] <= 1 and len(record["features"]) == 17
        assert record["settings"]["max_tokens"] in (12, 16) and record["settings"]["seed"] == 7
        # no log-probs are stored: only numbers and the settings, whose top_logprobs is the
        # width the upstream was asked for (what the regime check compares)
        assert set(record) == {"id", "time", "slice", "settings", "n_tokens", "finish_reason",
                               "features", "p"}  # fmt: skip
        assert record["settings"]["top_logprobs"] == 20
        assert all(isinstance(v, float) for v in record["features"].values())
        assert '"logprobs"' not in json.dumps(record) and "token" not in record["settings"]


@needs_server
def test_streaming(server, estimator, tmp_path):
    with ProxyServer(root(server), estimator, tmp_path / "features") as proxy:
        direct = httpx.Client(base_url=root(server), timeout=120)
        proxied = httpx.Client(base_url=proxy.url, timeout=120)
        for ask, strip in (
            (chat(QUESTIONS[2], stream=True), True),
            (chat(QUESTIONS[2], stream=True, logprobs=True, top_logprobs=20), False),
        ):
            a = events(direct.post("/v1/chat/completions", json=ask).text)
            with proxied.stream("POST", "/v1/chat/completions", json=ask) as reply:
                assert reply.headers["content-type"].startswith("text/event-stream")
                b = events(reply.read().decode())
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                assert y["choices"] == x["choices"]  # no log-probs, or the server's own
            assert any("logprobs" in c["choices"][0] for c in b) is not strip
        # the completions stream, log-probs not asked for
        ask = completion("One, two, three,", stream=True)
        a = events(direct.post("/v1/completions", json=ask).text)
        b = events(proxied.post("/v1/completions", json=ask).text)
        assert "".join(c["choices"][0]["text"] for c in b) == "".join(
            c["choices"][0]["text"] for c in a
        )
        assert all(c["choices"][0]["logprobs"] is None for c in b)
        wait_scored(proxy.url, 3)
    records = [json.loads(line) for line in proxy.feature_logs()[0].read_text().splitlines()[1:]]
    assert [r["settings"]["stream"] for r in records] == [True] * 3
    assert all(r["n_tokens"] >= 1 and 0 <= r["p"] <= 1 for r in records)


@needs_server
def test_eight_clients_two_slices_metrics_match_score(server, estimator, tmp_path):
    """8 concurrent clients on two slices (named in the body); /metrics' per-slice estimate is
    ``entropy-sentinel score`` on the proxy's own feature log."""
    args = ("--slice-field", "metadata.tenant")
    with ProxyServer(root(server), estimator, tmp_path / "features", *args) as proxy:
        client = httpx.Client(base_url=proxy.url, timeout=300)

        def one(n: int) -> str:
            tenant = "alpha" if n % 2 else "beta"
            ask = chat(QUESTIONS[n % 8], stream=n % 4 == 0, metadata={"tenant": tenant})
            ask["temperature"], ask["seed"] = 0.8, n  # a spread of p(correct)
            reply = client.post("/v1/chat/completions", json=ask)
            assert reply.status_code == 200, reply.text
            if ask["stream"]:
                chunks = events(reply.text)
                return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            return reply.json()["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(one, range(16)))
        assert all(texts)
        values = wait_scored(proxy.url, 16)
        page = httpx.get(f"{proxy.url}/metrics").text
    assert proxy.stopped_cleanly()  # SIGTERM: queued responses scored, the log flushed
    run = subprocess.run(
        [CLI, "score", *proxy.feature_logs(), "--estimator", estimator, "--out", tmp_path / "s"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    slices = pd.read_csv(tmp_path / "s" / "slices.csv").set_index("slice")
    assert sorted(slices.index) == ["*", "alpha", "beta"] and slices.loc["*", "n"] == 16
    for name in slices.index:
        got = {
            key: values[(f"entropy_sentinel_{metric}", ("slice", name))]
            for key, metric in (
                ("point", "estimated_accuracy"),
                ("low", "estimated_accuracy_low"),
                ("high", "estimated_accuracy_high"),
                ("n", "window_responses"),
            )
        }
        expected = slices.loc[name]
        assert got["n"] == expected["n"] == 8 * (1 + (name == "*"))
        np.testing.assert_allclose(
            [got["point"], got["low"], got["high"]],
            [expected["point"], expected["low"], expected["high"]],
            rtol=1e-9,
        )
        assert values[("entropy_sentinel_regime", ("regime", "unknown"), ("slice", name))] == 1
        assert 0 <= values[("entropy_sentinel_truncation_rate", ("slice", name))] <= 1
    latency = ("entropy_sentinel_request_seconds_count", ("endpoint", "chat"))
    assert values[(*latency, ("slice", "alpha"), ("stream", "false"))] == 8
    assert values[(*latency, ("slice", "beta"), ("stream", "true"))] == 4
    responses = {k: v for k, v in values.items() if k[0] == "entropy_sentinel_responses_total"}
    assert sum(responses.values()) == 16
    # every series the shipped Grafana dashboard plots is one the proxy serves
    dashboard = (REPO / "deploy" / "grafana-dashboard.json").read_text()
    plotted = set(re.findall(r"entropy_sentinel_[a-z_]+", dashboard))
    served = set(re.findall(r"^(?:# TYPE )?(entropy_sentinel_\w+)", page, re.MULTILINE))
    assert plotted and plotted <= served, plotted - served


class Stub:
    """A tiny upstream on 127.0.0.1: each path answers with a fixed status and body, after a
    delay (a 500 of its own, or an answer too late)."""

    ERROR = b'{"error":{"code":500,"message":"out of memory (stub)","type":"server_error"}}'

    def __init__(self, answers: dict[str, tuple[int, bytes, float]]):
        import asyncio

        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        def route(path, status, body, delay_s):
            async def answer(request):
                await asyncio.sleep(delay_s)
                return Response(body, status, media_type="application/json")

            return Route(path, answer, methods=["POST"])

        app = Starlette(routes=[route(path, *answer) for path, answer in answers.items()])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_upstream_500_and_timeout_pass_through(estimator, tmp_path):
    args = ("--upstream-timeout", "1", "--slice-header", "X-Slice")
    answers = {
        "/v1/chat/completions": (500, Stub.ERROR, 0.0),
        "/v1/completions": (200, b'{"choices":[]}', 3.0),
    }
    with Stub(answers) as stub, ProxyServer(stub.url, estimator, tmp_path / "f", *args) as proxy:
        client = httpx.Client(base_url=proxy.url, timeout=30)
        direct = httpx.post(f"{stub.url}/v1/chat/completions", json=chat("x"))
        failed = client.post("/v1/chat/completions", json=chat("x"), headers={"X-Slice": "s"})
        assert failed.status_code == direct.status_code == 500
        assert failed.content == Stub.ERROR  # the upstream's bytes, unchanged
        began = time.monotonic()
        late = client.post("/v1/completions", json=completion("x"), headers={"X-Slice": "s"})
        assert late.status_code == 504 and time.monotonic() - began < 2.9
        assert "did not answer within 1 s" in late.json()["error"]["message"]
        assert client.get("/healthz").json()["status"] == "ok"  # the proxy is still there
        values = metrics(proxy.url)
        assert values[("entropy_sentinel_upstream_errors_total", ("kind", "timeout"),
                       ("slice", "s"))] == 1  # fmt: skip
        code = ("entropy_sentinel_responses_total", ("code", "500"), ("endpoint", "chat"))
        assert values[(*code, ("slice", "s"), ("stream", "false"))] == 1
        # an error body is not scored: no window, and nothing scored
        assert not any(k[0] == "entropy_sentinel_estimated_accuracy" for k in values)
    assert proxy.stopped_cleanly()


def test_scoring_failure_is_counted_never_returned(estimator, tmp_path):
    """In process: an estimator that raises (the one thing mocked: a real one cannot be made
    to fail on cue) costs the client nothing; then the feature log rotates, and ``score``
    reads its files."""
    from starlette.testclient import TestClient
    from traffic_logs import synthetic_response

    from entropy_sentinel.estimate.classifier import load_estimator
    from entropy_sentinel.serve.proxy import ProxyConfig, build_app

    rng = np.random.default_rng(3)
    bodies = [synthetic_response(rng, 6, created=1_767_225_600 + n) for n in range(4)]
    for n, body in enumerate(bodies):
        body["id"] = f"chatcmpl-{n}"
    est = load_estimator(estimator)
    working = est.p_correct

    def broken(rows):
        raise RuntimeError("the estimator broke")

    est.p_correct = broken
    config = ProxyConfig(
        upstream="http://unused", estimator=estimator, log_dir=tmp_path / "f", rotate_bytes=300
    )
    for n, body in enumerate(bodies):
        answers = {"/v1/chat/completions": (200, json.dumps(body).encode(), 0.0)}
        with Stub(answers) as stub:
            config.upstream = stub.url
            with TestClient(build_app(config, est)) as client:
                sentinel = client.app.state.sentinel
                reply = client.post("/v1/chat/completions", json=chat("x"))
                assert reply.status_code == 200
                assert reply.json()["choices"] == [
                    {k: v for k, v in c.items() if k != "logprobs"} for c in body["choices"]
                ]  # what the client asked for: no log-probs
        # leaving the TestClient shut the app down: the queue was scored, the log closed
        failures = sentinel.failures.labels("RuntimeError")._value.get()
        scored = sentinel.scored.labels("all")._value.get()
        assert (failures, scored) == ((1, 0) if n == 0 else (0, 1))
        est.p_correct = working
    files = sorted((tmp_path / "f").glob("features-*.jsonl"))
    assert len(files) == 3  # each record passed 300 bytes: one file each, each with its header
    run = subprocess.run(
        [CLI, "score", *files, "--estimator", estimator, "--out", tmp_path / "s"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    scored = pd.read_parquet(tmp_path / "s" / "responses.parquet")
    assert list(scored["id"]) == [b["id"] for b in bodies[1:]]
    stored = [json.loads(f.read_text().splitlines()[1])["p"] for f in files]
    np.testing.assert_allclose(scored["p_correct"], stored, rtol=1e-12)


def test_cli_refuses_bad_proxy_arguments(estimator, tmp_path):
    def run(*args):
        return subprocess.run([CLI, "proxy", *map(str, args)], capture_output=True, text=True)

    bad = run("--upstream", "http://127.0.0.1:9", "--estimator", tmp_path / "no.skops")
    assert bad.returncode == 2 and "no such estimator" in bad.stderr
    bad = run("--upstream", "127.0.0.1:9", "--estimator", estimator)
    assert bad.returncode == 2 and "give a URL" in bad.stderr
    bad = run("--upstream", "http://x", "--estimator", estimator, "--listen", "8787")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    bad = run("--upstream", "http://x", "--estimator", estimator, "--logprobs-mode", "processed")
    assert bad.returncode == 2 and "trained on raw log-probs" in bad.stderr


@needs_server
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no prometheus binary (apt-get install -y prometheus; .ci/run installs it)",
)
def test_prometheus_scrapes_the_proxy(server, estimator, tmp_path):
    with ProxyServer(root(server), estimator, tmp_path / "f", "--slice-header", "X-Slice") as proxy:
        client = httpx.Client(base_url=proxy.url, timeout=120)
        for n in range(4):
            slice_ = "alpha" if n % 2 else "beta"
            reply = client.post(
                "/v1/chat/completions", json=chat(QUESTIONS[n]), headers={"X-Slice": slice_}
            )
            assert reply.status_code == 200
        values = wait_scored(proxy.url, 4)
        port = free_port()
        # the shipped scrape config, pointed at this proxy and scraping every second
        config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        (job,) = config["scrape_configs"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{proxy.port}"]
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        with open(tmp_path / "prometheus.log", "wb") as output:
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config_path}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            found = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(found) < 2:
                try:
                    answer = httpx.get(
                        f"http://127.0.0.1:{port}/api/v1/query",
                        params={"query": 'entropy_sentinel_estimated_accuracy{slice!="*"}'},
                    ).json()
                    found = {
                        r["metric"]["slice"]: float(r["value"][1]) for r in answer["data"]["result"]
                    }
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(0.5)
        finally:
            prometheus.terminate()
            prometheus.wait(20)
    assert sorted(found) == ["alpha", "beta"], (tmp_path / "prometheus.log").read_text()[-2000:]
    labels = {r["metric"]["model"] for r in answer["data"]["result"]}
    assert labels == {"smollm2-135m"}  # the shipped config's target label
    for name, value in found.items():
        assert value == pytest.approx(
            values[("entropy_sentinel_estimated_accuracy", ("slice", name))], rel=1e-9
        )


def test_legacy_completions_layout_is_gathered_and_cut():
    """vLLM's legacy completions log-probs ({token: logprob} per step), streamed: gathered
    into one response the scorer's parser reads, and cut to what the client asked for."""
    from entropy_sentinel.serve.logs import response_batch
    from entropy_sentinel.serve.proxy import _event, _Gathered, _split_events

    rng = np.random.default_rng(1)
    stream = b""
    for step in range(3):
        logp = np.sort(np.log(rng.dirichlet(np.ones(20))))[::-1]
        top = {f"t{i}": float(v) for i, v in enumerate(logp)}
        chunk = {"id": "cmpl-1", "created": 1, "choices": [{"index": 0, "text": f"t{step}",
                 "logprobs": {"tokens": ["t0"], "token_logprobs": [float(logp[0])],
                              "top_logprobs": [top]}, "finish_reason": None}]}  # fmt: skip
        stream += b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"
    stream += b"data: [DONE]\n\n"
    gathered, out = _Gathered(), []
    buffer = b""
    for piece in (stream[i : i + 37] for i in range(0, len(stream), 37)):  # torn anywhere
        *events, buffer = _split_events(buffer + piece)
        out += [_event(event, gathered, (2, "completions")) for event in events]
    assert buffer == b"" and out[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(e[5:]) for e in out[:-1]]
    assert [len(c["choices"][0]["logprobs"]["top_logprobs"][0]) for c in chunks] == [2, 2, 2]
    assert list(chunks[0]["choices"][0]["logprobs"]["top_logprobs"][0]) == ["t0", "t1"]
    response = gathered.response()
    assert response["choices"][0]["text"] == "t0t1t2"
    batch = response_batch([(response, "all", 1.0, "cmpl-1", None)], 20, "raw")
    assert len(batch) == 1 and batch.topk.shape == (3, 20) and not batch.skipped


def test_the_window_regime_widens_metrics_of_traffic_unlike_the_training_rows(estimator, tmp_path):
    """/metrics under the regime check: requests whose settings differ from those recorded with
    the estimator make their slice `shifted`, and its interval wider by widen_by than the
    label-free one; requests made like the training rows leave it `same` and unchanged. The
    upstream is a stub answering synthetic llama-server responses (no model needed)."""
    from starlette.testclient import TestClient
    from traffic_logs import synthetic_response, write_log

    from entropy_sentinel.estimate.classifier import load_estimator
    from entropy_sentinel.estimate.intervals import SliceInterval
    from entropy_sentinel.estimate.regime import (
        FeatureSupport,
        TrainingRegime,
        settings_from_request,
    )
    from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec
    from entropy_sentinel.serve.logs import LogFormat, read_log
    from entropy_sentinel.serve.proxy import ProxyConfig, build_app
    from entropy_sentinel.serve.scoring import batch_features

    est = load_estimator(estimator)
    log = write_log(tmp_path / "train.jsonl", 90, seed=5)
    rows = batch_features(read_log(log, LogFormat(response_field="response"), 20), FeatureSpec())
    support = FeatureSupport.fit(rows, np.arange(90) % 3, list(FEATURE_NAMES), min_rows=20)
    trained = chat("x", temperature=0.7)
    settings = settings_from_request(trained) | {"top_logprobs": 20.0}
    regime = TrainingRegime(settings, support, "widen", 0.05)
    est.deploy(SliceInterval.from_dict(est.interval_), None, regime)
    rng = np.random.default_rng(4)
    config = ProxyConfig(upstream="http://unused", estimator=estimator, log_dir=tmp_path / "f",
                         slice_header="X-Slice")  # fmt: skip
    metrics = {}
    for name, body in (("same", trained), ("other", chat("x", temperature=0.1))):
        answer = synthetic_response(rng, 8, created=1_767_225_600)
        with Stub({"/v1/chat/completions": (200, json.dumps(answer).encode(), 0.0)}) as stub:
            config.upstream = stub.url
            with TestClient(build_app(config, est)) as client:
                for _ in range(3):
                    reply = client.post("/v1/chat/completions", json=body,
                                        headers={"X-Slice": name})  # fmt: skip
                    assert reply.status_code == 200
                sentinel = client.app.state.sentinel
                deadline = time.time() + 30
                while sentinel.scored.labels(name)._value.get() < 3 and time.time() < deadline:
                    time.sleep(0.1)
                text = client.get("/metrics").text
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.labels.get("slice") == name:
                            metrics[(sample.name, name, sample.labels.get("regime"))] = sample.value
        window = sentinel.windows[name]
        plain = est.estimate_from_rows([row for _, row, _, _ in window.rows])
        metrics[("plain", name)] = plain
    assert metrics[("entropy_sentinel_regime", "same", "same")] == 1
    assert metrics[("entropy_sentinel_regime", "other", "shifted")] == 1
    same, other = metrics[("plain", "same")], metrics[("plain", "other")]
    low = "entropy_sentinel_estimated_accuracy_low"
    assert metrics[(low, "same", None)] == pytest.approx(same.low)
    assert metrics[(low, "other", None)] == pytest.approx(max(0.0, other.low - 0.05))


def test_train_reads_the_proxys_feature_log(tmp_path):
    """`train` on a feature log and a labels CSV: the proxy's features as stored, its header's
    feature spec and each request's settings recorded; features the log lacks are refused."""
    from traffic_logs import write_log

    from entropy_sentinel.features.compute import FeatureSpec
    from entropy_sentinel.serve.feature_log import VERSION
    from entropy_sentinel.serve.logs import LogFormat, read_log
    from entropy_sentinel.serve.scoring import batch_features

    traffic = write_log(tmp_path / "t.jsonl", 90, seed=8)
    batch = read_log(traffic, LogFormat("response", "tenant"), 20)
    features = batch_features(batch, FeatureSpec())
    rng = np.random.default_rng(0)
    correct = rng.random(90) < 1 / (1 + np.exp(-(6 - 3 * features["mean"])))
    settings = {"temperature": 0.7, "top_p": 1.0, "top_logprobs": 20.0, "endpoint": "chat"}
    log = tmp_path / "features-0.jsonl"
    with open(log, "w") as out:
        spec = FeatureSpec(k=20, logprobs_mode="raw").as_dict()
        out.write(json.dumps({"feature_log": VERSION, "feature_spec": spec}) + "\n")
        for i, row in features.iterrows():
            record = {"id": f"r{i}", "time": 1_767_225_600 + i, "slice": batch.meta["slice"][i],
                      "settings": settings, "n_tokens": 8, "finish_reason": "stop",
                      "features": row.to_dict(), "p": 0.5}  # fmt: skip
            out.write(json.dumps(record) + "\n")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(90)], "correct": correct.astype(int)}).to_csv(
        labels, index=False
    )
    est = tmp_path / "est.skops"

    def train(*extra):
        return subprocess.run([CLI, "train", log, "--labels", labels, "--out", est, *extra],
                              capture_output=True, text=True)  # fmt: skip

    refused = train()  # the default design needs the answer features, which this log lacks
    assert refused.returncode == 2 and "answer_stated" in refused.stderr
    run = train("--set", "features=3D")
    assert run.returncode == 0, run.stderr
    assert "trained on 90 rows of 3 slices" in run.stdout and "temperature=0.7" in run.stdout
    meta = json.loads(subprocess.run([CLI, "inspect", est, "--json"], capture_output=True,
                                     text=True, check=True).stdout)  # fmt: skip
    assert meta["feature_spec"]["k"] == 20 and meta["regime"]["settings"]["top_p"] == 1.0
