"""The LLM judge through the workflow: `snakemake results/grades/...` against a fake
OpenAI-compatible server that this test starts on 127.0.0.1 (it stands in for the remote judge
model, which cannot run here). Requests arrive, verdicts land in the grades table, the summary
counts what stays ungraded, and a rerun asks nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from entropy_sentinel.generate.shard import GENERATION_COLUMNS
from entropy_sentinel.provenance import write_parquet

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    {"id": "q1", "question": "What carries a negative charge?", "answer": "an electron"},
    {"id": "q2", "question": "What is 2 + 2?", "answer": "four"},
    {"id": "q3", "question": "Name a noble gas.", "answer": "neon"},
]
RESPONSES = {"q1": "It is the electron.", "q2": "four", "q3": "I think it is oxygen."}


class Judge(BaseHTTPRequestHandler):
    """A judge that says yes when the response mentions the reference's last word."""

    requests: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        user = body["messages"][-1]["content"]
        response = user.split("# response\n")[1].split("\n\n# correct answer")[0]
        reference = user.rsplit("# correct answer\n", 1)[1]
        verdict = reference.split()[-1].lower() in response.lower()
        reply = json.dumps(
            {
                "choices": [{"message": {"content": json.dumps({"success": verdict})}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 6},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    Judge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def snakemake(workdir: Path, *targets: str) -> str:
    run = subprocess.run(
        [str(REPO / ".venv/bin/snakemake"), *targets, "-s", str(REPO / "Snakefile")]
        + ["--cores", "1", "--configfile", "config/config.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JUDGE_KEY": "secret-from-env"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def test_judge_grades_what_rules_cannot_through_the_workflow(tmp_path, judge_url):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # never loaded: the generations already exist
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"] = {"m": {"source": "local", "path": str(model)}}
    config["benchmarks"] = {
        "qa": {
            "source": "file",
            "path": str(tmp_path / "qa.jsonl"),
            "question_field": "question",
            "answer_field": "answer",
            "answer_type": "text",
            "id_field": "id",
        }
    }
    config["estimator"] = {"slice_by": "benchmark", "train_slices": ["qa"]}
    config["grading"] = {
        "judge": {
            "enabled": True,
            "base_url": judge_url,
            "model": "fake-judge",
            "api_key_env": "JUDGE_KEY",
            "timeout_s": 5,
            "concurrency": 3,
        }
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "resources/benchmarks/qa.parquet")
    shard = tmp_path / "results/generations/m/qa/shard-0.parquet"
    rows = [dict.fromkeys(GENERATION_COLUMNS) for _ in QUESTIONS]
    for row, q in zip(rows, QUESTIONS, strict=True):
        row.update(item_id=q["id"], response=RESPONSES[q["id"]], n_tokens=3, finish_reason="stop")
    rows[1].update(response="four")  # the rules match this one exactly: no request for it
    write_parquet(pd.DataFrame(rows), shard, {"backend": "test"})
    (tmp_path / "resources/models/m").mkdir(parents=True)
    manifest = {"name": "m", "weights_dir": str(model), "spec": {}}
    (tmp_path / "resources/models/m/manifest.json").write_text(json.dumps(manifest))
    os.utime(shard)  # newer than its inputs: nothing to regenerate

    snakemake(tmp_path, "results/grades/m/qa.parquet")
    grades = pd.read_parquet(tmp_path / "results/grades/m/qa.parquet").set_index("item_id")
    assert len(Judge.requests) == 2  # q1 and q3: the rules gave no verdict
    assert {r["model"] for r in Judge.requests} == {"fake-judge"}
    assert grades.loc["q1", "correct"] is True or grades.loc["q1", "correct"] == True  # noqa: E712
    assert grades.loc["q3", "correct"] == False  # noqa: E712
    assert grades.loc["q2", "grader"] == "rules" and grades.loc["q2", "correct"] == True  # noqa: E712
    assert set(grades.loc[["q1", "q3"], "grader"]) == {"llm_judge"}
    assert grades["correct"].notna().all()
    log = (tmp_path / "logs/grade/m/qa.log").read_text()
    assert "secret-from-env" not in log  # the key travels in a header, never into logs

    # A forced rerun reads every verdict from the cache: the judge is asked nothing twice.
    snakemake(tmp_path, "results/grades/m/qa.parquet", "--forcerun", "grade", "--nolock")
    assert len(Judge.requests) == 2
    again = pd.read_parquet(tmp_path / "results/grades/m/qa.parquet").set_index("item_id")
    assert list(again["correct"]) == list(grades["correct"])
    assert again.loc["q1", "cached"] == True  # noqa: E712


def test_open_gpqa_without_a_judge_is_refused(tmp_path):
    from entropy_sentinel.config.loading import ConfigError
    from entropy_sentinel.config.plan import plan_workflow

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["grading"]["judge"]["enabled"] = False
    with pytest.raises(ConfigError, match="gpqa_mode: open answers need the LLM judge"):
        plan_workflow(config)
    config["benchmarks"]["gpqa"].pop("gpqa_mode")  # the default: multiple choice
    plan_workflow(config)
    assert config["benchmarks"]["gpqa"]["gpqa_mode"] == "mcq"
