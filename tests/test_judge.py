"""LLM judge, tested against a fake OpenAI-compatible server started on 127.0.0.1 in the test.

No network beyond the loopback interface is used.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from entropy_sentinel.grading.judge import (
    SYSTEM_PROMPT,
    Judge,
    JudgeConfig,
    cache_key,
    parse_verdict,
)


class FakeEndpoint(BaseHTTPRequestHandler):
    """Replies from a script of (status, content) pairs; records every request body."""

    script: list = []
    requests: list = []
    delay_s = 0.0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        time.sleep(type(self).delay_s)
        status, content = type(self).script.pop(0) if type(self).script else (200, "{}")
        if status != 200:
            self.send_response(status)
            self.end_headers()
            return
        reply = {
            "choices": [{"message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 5},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    FakeEndpoint.script, FakeEndpoint.requests, FakeEndpoint.delay_s = [], [], 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def make_judge(url, tmp_path, **kwargs):
    config = JudgeConfig(base_url=url, model="fake-judge", api_key_env=None, **kwargs)
    return Judge(config)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"success": true}', True),
        (' {"success": false}\n', False),
        ('```json\n{"success": true}\n```', True),
        ('{"success": "true"}', None),
        ("The answer is true", None),
        ('{"success": true, "why": 1}', None),
        ("not true at all", None),
        ("[" * 10_000, None),
    ],
)
def test_parse_verdict_is_strict(content, expected):
    assert parse_verdict(content) is expected


def test_prompt_follows_the_original_contract(server, tmp_path):
    FakeEndpoint.script = [(200, '{"success": true}')]
    verdict = make_judge(server, tmp_path).judge("q1", "What is 2+2?", "4<|endoftext|>", "4")
    assert verdict.correct is True and verdict.status == "judged"
    assert verdict.prompt_tokens == 50 and verdict.completion_tokens == 5
    assert verdict.latency_s is not None
    messages = FakeEndpoint.requests[0]["messages"]
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["content"] == (
        "# question\nWhat is 2+2?\n\n# response\n4\n\n# correct answer\n4"
    )


def test_retries_with_backoff_then_succeeds(server, tmp_path):
    FakeEndpoint.script = [(503, ""), (429, ""), (200, '{"success": false}')]
    started = time.monotonic()
    verdict = make_judge(server, tmp_path).judge("q1", "Q", "5", "4")
    assert verdict.correct is False and verdict.attempts == 3
    assert len(FakeEndpoint.requests) == 3
    assert time.monotonic() - started >= 0.75 * (0.5 + 1.0)  # the client's backoff, jittered


def test_never_retries_a_bad_request(server, tmp_path):
    FakeEndpoint.script = [(400, ""), (200, '{"success": true}')]
    verdict = make_judge(server, tmp_path).judge("q1", "Q", "5", "4")
    assert verdict.status == "error" and verdict.raw == "HTTP 400"
    assert len(FakeEndpoint.requests) == 1


def test_timeout_is_an_error_not_a_hang(server, tmp_path):
    FakeEndpoint.delay_s = 2.0
    started = time.monotonic()
    verdict = make_judge(server, tmp_path, timeout_s=0.2, max_retries=1).judge("q1", "Q", "5", "4")
    assert verdict.status == "error" and verdict.correct is None
    assert time.monotonic() - started < 1.5


def test_bad_json_is_unjudged_and_not_cached(server, tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    FakeEndpoint.script = [(200, "yes, it is true")]
    judge = make_judge(server, tmp_path, cache_path=str(cache))
    verdict = judge.judge("q1", "Q", "5", "4")
    assert verdict.correct is None and verdict.status == "unjudged"
    assert not cache.exists()


def test_gives_up_after_max_retries(server, tmp_path):
    FakeEndpoint.script = [(500, "")] * 4
    verdict = make_judge(server, tmp_path, max_retries=3).judge("q1", "Q", "5", "4")
    assert verdict.status == "error" and verdict.correct is None and verdict.raw == "HTTP 500"
    assert len(FakeEndpoint.requests) == 3


def test_cache_hits_survive_a_restart(server, tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    FakeEndpoint.script = [(200, '{"success": true}')]
    first = make_judge(server, tmp_path, cache_path=str(cache)).judge("q1", "Q", "4", "4")
    again = make_judge(server, tmp_path, cache_path=str(cache)).judge("q1", "Q", "4", "4")
    assert first.correct is again.correct is True and again.cached
    assert len(FakeEndpoint.requests) == 1
    assert cache_key("q1", "4", "fake-judge") != cache_key("q1", "4 ", "fake-judge")


def test_judge_table(server, tmp_path):
    FakeEndpoint.script = [(200, '{"success": true}'), (200, "garbage")]
    benchmark = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "question": ["Q1", "Q2"],
            "reference": ["1", "2"],
            "answer_type": ["text", "text"],
            "metadata": ['{"solution": "full solution #### 1"}', "{}"],
        }
    )
    generations = pd.DataFrame({"item_id": ["a", "b"], "response": ["1", "3"]})
    # one at a time: the script's answers go out in arrival order, which threads would shuffle
    table = make_judge(server, tmp_path, concurrency=1).judge_table(generations, benchmark)
    assert list(table["correct"]) == [True, None]
    assert list(table["reason"]) == ["judged", "unjudged"]
    assert "full solution" in FakeEndpoint.requests[0]["messages"][1]["content"]
