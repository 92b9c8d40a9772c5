"""Error rows are work left to do, and a run stops when told: a real ``snakemake`` process runs
rule generate (backend openai) against a small OpenAI-compatible server on 127.0.0.1 that
misbehaves as told (bodies that are not JSON for some or all items, slow answers).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from traffic_logs import synthetic_response

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(REPO / ".venv" / "bin" / "snakemake")
SHARD = "results/generations/served/synthetic/shard-0.parquet"


def fails(question: str) -> bool:
    """The items the server fails in mode "some": a fixed third of them."""
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 3 == 0


class Server(ThreadingHTTPServer):
    """Chat completions with top-20 log-probs; ``mode``: ok, some (a third get a torn body),
    all (every item gets one), deny (401 to everything); ``delay_s`` per request. Records each
    question it is sent."""

    daemon_threads = True

    def __init__(self, mode: str = "ok", delay_s: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode, self.delay_s = mode, delay_s
        self.questions: list[str] = []
        self.rng = np.random.default_rng(0)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(json.dumps({"object": "list", "data": [{"id": "served"}]}).encode())

    def do_POST(self):
        server = self.server
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = request["messages"][-1]["content"]
        time.sleep(server.delay_s)
        if server.mode == "deny":
            data = b'{"error": {"message": "invalid api key"}}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if question != "Hi":  # the start-up check's request
            server.questions.append(question)
            if server.mode == "all" or (server.mode == "some" and fails(question)):
                self._send(b'{"choices": [')
                return
        self._send(json.dumps(synthetic_response(server.rng, 3)).encode())


def workdir_for(tmp_path: Path, server: Server, n_per_domain: int = 4, chunk: int = 4) -> Path:
    from test_workflow import five_domain_demo

    config = five_domain_demo()  # 5 domains: n_per_domain=40 is 200 items
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")  # the openai backend reads no weights
    config["models"] = {"served": {"source": "local", "path": str(model)}}
    domains = config["benchmarks"]["synthetic"]["domains"]
    config["benchmarks"] = {
        "synthetic": {"source": "synthetic", "n_per_domain": n_per_domain, "seed": 1,
                      "domains": domains}
    }  # fmt: skip
    config["generation"].update(
        backend="openai",
        shard_size=1000,
        chunk_size=chunk,
        openai={"base_url": server.base_url, "api_key_env": None, "concurrency": 1,
                "max_retries": 0, "backoff_s": 0.01},
    )  # fmt: skip
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_error_rows_are_retried_and_only_they(tmp_path):
    server = Server(mode="some")
    workdir = workdir_for(tmp_path, server)
    first = snakemake(workdir, SHARD)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = pd.read_parquet(workdir / SHARD)
    failed = rows[rows["error"].notna()]
    assert len(failed) and len(failed) < len(rows)
    assert failed["error"].str.contains("not a JSON object").all()
    assert not list((workdir / SHARD).parent.glob(".store/*.parquet"))  # not stored
    # the closing line tells what was made: a shard, not the summary
    assert "done: results/generations/served/synthetic/shard-0.parquet" in first.stdout
    assert "summary written" not in first.stdout + first.stderr

    server.mode, server.questions = "ok", []
    dry = snakemake(workdir, SHARD, "-n")
    assert "1 generation file(s) hold items that failed" in dry.stderr and "rule generate" in (
        dry.stdout + dry.stderr
    )
    second = snakemake(workdir, SHARD)  # a plain rerun
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(server.questions) == sorted(q for q in server.questions if fails(q))
    assert len(server.questions) == len(failed)  # only those items were sent again
    rows = pd.read_parquet(workdir / SHARD)
    assert rows["error"].isna().all()
    assert list((workdir / SHARD).parent.glob(".store/*.parquet"))  # now stored

    server.questions = []
    third = snakemake(workdir, SHARD)
    assert "Nothing to be done" in third.stdout + third.stderr and not server.questions
    forced = snakemake(workdir, SHARD, "--forcerun", SHARD)  # a good shard comes from the store
    assert forced.returncode == 0 and not server.questions


def test_a_shard_whose_items_all_failed_fails_its_job(tmp_path):
    server = Server(mode="all")
    workdir = workdir_for(tmp_path, server)
    run = snakemake(workdir, SHARD)
    assert run.returncode != 0
    assert not (workdir / SHARD).exists()
    log = (workdir / "logs/generate/served/synthetic/shard-0.log").read_text()
    message = f"all {len(server.questions)} items failed; nothing is written"
    assert message in run.stderr and message in log
    assert "not a JSON object" in run.stderr and f"snakemake {SHARD}" in run.stderr
    assert "Traceback" not in run.stderr

    server.mode, server.questions = "ok", []
    again = snakemake(workdir, SHARD, "--forcerun", SHARD)
    assert again.returncode == 0, again.stderr[-3000:]
    assert pd.read_parquet(workdir / SHARD)["error"].isna().all()


def test_a_server_that_refuses_fails_the_job_with_its_url_and_no_traceback(tmp_path):
    server = Server(mode="deny")
    run = snakemake(workdir_for(tmp_path, server), SHARD)
    assert run.returncode != 0
    assert f"the server at {server.base_url} did not answer the start-up check" in run.stderr
    assert 'HTTP 401: \'{"error": {"message": "invalid api key"}}\'' in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_keeps_chunks_and_the_next_run_resumes(tmp_path, signum):
    server = Server(delay_s=0.3)
    workdir = workdir_for(tmp_path, server, n_per_domain=40, chunk=2)  # 200 items, ~60 s
    process = subprocess.Popen(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "2", SHARD],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    parts = workdir / "results/generations/served/synthetic/.shard-0.parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("chunk-*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(parts.glob("chunk-*.parquet"))) >= 2, "no chunk committed in time"
    process.send_signal(signum)
    started = time.monotonic()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"snakemake still running 30 s after {signal.Signals(signum).name}")
    stopped_in = time.monotonic() - started
    assert process.returncode != 0 and stopped_in < 30
    committed = pd.concat(map(pd.read_parquet, parts.glob("chunk-*.parquet")))
    assert len(committed) >= 4 and committed["error"].isna().all()
    assert not list((workdir / ".snakemake" / "locks").glob("*"))  # no --unlock needed
    sent_before = len(server.questions)
    assert sent_before < 200

    server.delay_s, server.questions = 0.0, []
    resumed = snakemake(workdir, SHARD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = pd.read_parquet(workdir / SHARD)
    assert len(rows) == 200 and rows["error"].isna().all()
    assert len(server.questions) <= 200 - len(committed)  # committed items are not sent again
    assert (
        f"{len(committed)} already done"
        in (workdir / "logs/generate/served/synthetic/shard-0.log").read_text()
    )
