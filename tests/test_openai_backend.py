"""The openai backend's HTTP behaviour: retries with backoff, timeouts, keys, response layouts.

A real llama-server cannot be made to fail on demand, so these tests run a small stub HTTP
server on 127.0.0.1 that answers like one (canned chat completions) and fails as told: 503s,
400s, slow replies. Everything else about the backend is tested against the real server in
tests/test_llama_server.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from traffic_logs import synthetic_response

from entropy_sentinel.generate.backends import GENERATION_COLUMNS, GenerationSettings, load_backend
from entropy_sentinel.generate.backends.openai_backend import convert_response, text_reasoning_mask

K3 = GenerationSettings(top_k_logprobs=3, max_new_tokens=8, seed=1)


class Stub(ThreadingHTTPServer):
    """Answers POSTs with ``plan`` (a list of status codes, then 200s) and records requests."""

    def __init__(self, plan=(), delay_s: float = 0.0, k: int = 3):
        super().__init__(("127.0.0.1", 0), Handler)
        self.plan, self.delay_s, self.k = list(plan), delay_s, k
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.rng = np.random.default_rng(0)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # /v1/models
        self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        server = self.server
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append(request)
        server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        status = server.plan.pop(0) if server.plan else 200
        time.sleep(server.delay_s)
        if status == "badjson":  # a 200 whose body is torn: a proxy, a crashed worker
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b'{"choices')
            return
        if status != 200:
            self._send(status, {"error": {"message": f"status {status}", "code": status}})
            return
        self._send(200, synthetic_response(server.rng, 4, k=server.k))


def backend(stub: Stub, settings=K3, **changes):
    options = {"base_url": stub.base_url, "model": "stub", "api_key_env": None, "backoff_s": 0.01}
    return load_backend("openai", None, settings, options={**options, **changes})


def prompt():
    return [{"role": "user", "content": "hi"}]


def test_retries_with_backoff_then_succeeds():
    stub = Stub(plan=[503, 429, 502])
    row = backend(stub, max_retries=3).generate(["a"], [prompt()])[0]
    assert row["error"] is None and len(stub.requests) == 4
    assert set(row) == set(GENERATION_COLUMNS) and row["n_tokens"] == 4
    request = stub.requests[-1]
    assert request["logprobs"] is True and request["top_logprobs"] == 3
    assert request["max_tokens"] == 8 and isinstance(request["seed"], int)


def test_gives_up_after_max_retries_and_never_retries_a_bad_request():
    stub = Stub(plan=[503] * 10)
    row = backend(stub, max_retries=2).generate(["a"], [prompt()])[0]
    assert row["finish_reason"] == "error" and "503" in row["error"]
    assert len(stub.requests) == 3
    stub = Stub(plan=[400])
    row = backend(stub, max_retries=5).generate(["a"], [prompt()])[0]
    assert row["finish_reason"] == "error" and len(stub.requests) == 1


def test_timeout_becomes_an_error_row():
    stub = Stub(delay_s=1.5)
    started = time.monotonic()
    row = backend(stub, timeout_s=0.3, max_retries=1).generate(["a"], [prompt()])[0]
    assert row["finish_reason"] == "error" and "timed out" in row["error"].lower()
    assert time.monotonic() - started < 3.0


def test_bounded_concurrency_and_per_item_seeds():
    stub = Stub(delay_s=0.2)
    ids = [f"i{n}" for n in range(6)]
    started = time.monotonic()
    rows = backend(stub, concurrency=3).generate(ids, [prompt()] * 6)
    elapsed = time.monotonic() - started
    assert [r["item_id"] for r in rows] == ids
    assert 0.35 < elapsed < 1.1  # two rounds of three, not six in a row nor all at once
    seeds = [r["seed"] for r in stub.requests]
    assert len(set(seeds)) == 6
    backend(stub, concurrency=3).generate(ids[::-1], [prompt()] * 6)
    assert sorted(r["seed"] for r in stub.requests[6:]) == sorted(seeds)


def test_key_comes_from_the_environment_and_is_never_recorded(monkeypatch):
    stub = Stub()
    with pytest.raises(RuntimeError, match="ES_TEST_KEY.*not set"):
        backend(stub, api_key_env="ES_TEST_KEY")
    monkeypatch.setenv("ES_TEST_KEY", "sk-secret-123")
    chosen = backend(stub, api_key_env="ES_TEST_KEY")
    chosen.generate(["a"], [prompt()])
    assert stub.headers_seen[-1]["authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in json.dumps(chosen.provenance())


def test_too_few_top_logprobs_and_missing_logprobs_are_errors():
    stub = Stub(k=2)
    row = backend(stub).generate(["a"], [prompt()])[0]
    assert row["finish_reason"] == "error" and "fewer than top_k_logprobs=3" in row["error"]
    assert "--max-logprobs 3" in row["error"]
    body = synthetic_response(np.random.default_rng(0), 2, k=3)
    body["choices"][0]["logprobs"] = None
    with pytest.raises(ValueError, match="no logprobs"):
        convert_response("a", body, K3, [])


def test_legacy_layout_and_text_reasoning_spans():
    body = {
        "choices": [
            {
                "text": "<think>hm</think>4",
                "finish_reason": "length",
                "logprobs": {
                    "tokens": ["<think>", "hm", "</think>", "4"],
                    "token_logprobs": [-0.1, -0.2, -0.3, -2.0],
                    "top_logprobs": [
                        {"<think>": -0.1, "a": -3.0},
                        {"b": -2.5, "hm": -0.2},
                        {"</think>": -0.3, "c": -1.4},
                        {"5": -0.5, "6": -1.0},
                    ],
                },
            }
        ]
    }
    settings = GenerationSettings(top_k_logprobs=2)
    row = convert_response("a", body, settings, [("<think>", "</think>")])
    assert row["topk_logprobs"][1] == [-0.2, -2.5]  # sorted, most likely first
    assert row["sampled_in_topk"] == [True, True, True, False]
    assert row["is_reasoning"] == [True, True, True, False]
    assert row["token_ids"] is None and row["finish_reason"] == "length"
    assert text_reasoning_mask(["a", "<th", "ink>", "x"], [("<think>", "</think>")]) == [
        False,
        True,
        True,
        True,
    ]


THINK = [("<think>", "</think>")]


def test_reasoning_sent_apart_is_kept_in_the_response():
    """vLLM --reasoning-parser, llama-server --reasoning-format and SGLang return the thinking in
    message.reasoning_content (newer vLLM: message.reasoning), the answer in content."""
    tokens = ["<think>", "hm", "</think>", "4"]
    content = [
        {"token": t, "logprob": -0.1, "top_logprobs": [{"token": t, "logprob": -0.1}]}
        for t in tokens
    ]
    for field in ("reasoning_content", "reasoning"):
        message = {"role": "assistant", "content": "4", field: "hm"}
        body = {"choices": [{"message": message, "logprobs": {"content": content}}]}
        row = convert_response("a", body, GenerationSettings(top_k_logprobs=1), THINK)
        assert row["response"] == "<think>hm</think>4"
        assert row["is_reasoning"] == [True, True, True, False]
    message = {"role": "assistant", "content": None, "reasoning_content": "hm"}  # cut mid-thought
    body = {"choices": [{"message": message, "logprobs": {"content": content[:2]}}]}
    row = convert_response("a", body, GenerationSettings(top_k_logprobs=1), THINK)
    assert row["response"] == "<think>hm</think>"


def test_invalid_json_and_any_5xx_are_retried_like_connection_errors():
    stub = Stub(plan=["badjson", 501, "badjson"])
    row = backend(stub, max_retries=3).generate(["a"], [prompt()])[0]
    assert row["error"] is None and len(stub.requests) == 4
    stub = Stub(plan=["badjson"] * 5)
    row = backend(stub, max_retries=1).generate(["a"], [prompt()])[0]
    assert row["finish_reason"] == "error" and len(stub.requests) == 2
    assert "not a JSON object" in row["error"] and "'{\"choices'" in row["error"]


def test_startup_check_waits_for_a_server_that_comes_up():
    """Refused at first (still loading), then up: the check retries with backoff."""
    import socket

    with socket.socket() as probe:  # a free port, nothing listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = {}

    def start_later():
        time.sleep(1.0)
        late["stub"] = Stub.__new__(Stub)
        ThreadingHTTPServer.__init__(late["stub"], ("127.0.0.1", port), Handler)
        late["stub"].plan, late["stub"].delay_s, late["stub"].k = [], 0.0, 3
        late["stub"].requests, late["stub"].headers_seen = [], []
        late["stub"].rng = np.random.default_rng(0)
        threading.Thread(target=late["stub"].serve_forever, daemon=True).start()

    threading.Thread(target=start_later, daemon=True).start()
    options = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "stub", "api_key_env": None,
               "backoff_s": 0.2, "startup_timeout_s": 20}  # fmt: skip
    provenance = load_backend("openai", None, K3, options=options).provenance()
    assert provenance["server_model"] == "smollm2-135m" and late["stub"].requests


@pytest.mark.parametrize(
    ("plan", "delay_s", "said"),
    [
        (["badjson"] * 50, 0.0, "not a JSON object: '{\"choices'"),
        ([503] * 50, 0.0, 'HTTP 503: \'{"error": {"message": "status 503"'),
        ([], 5.0, "timed out"),
        ([401], 0.0, "HTTP 401"),
    ],
)
def test_startup_check_fails_within_its_deadline_naming_url_and_reply(plan, delay_s, said):
    from entropy_sentinel.generate.backends.openai_backend import ServerUnavailable

    stub = Stub(plan=plan, delay_s=delay_s)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as caught:
        backend(stub, backoff_s=0.1, startup_timeout_s=1.5, timeout_s=300).provenance()
    assert time.monotonic() - started < 4.0  # the deadline bounds even a hung request
    message = str(caught.value)
    assert stub.base_url in message and said in message, message
    if plan == [401]:
        assert len(stub.requests) == 1  # waiting does not help a refused key
