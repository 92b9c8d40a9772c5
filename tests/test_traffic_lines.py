"""Traffic logs read line by line: every bad line is skipped, counted under its own reason and
named by the file's own line number; flags that match nothing and an unusable --out are refused
before any work. Ends with a fuzz test of the reader through the CLI.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import WRAPPED, fit_estimator, run_cli
from traffic_logs import write_log

SCORE = ["--logprobs-mode", "raw"]


@pytest.fixture(scope="module")
def estimator(tmp_path_factory) -> Path:
    return fit_estimator(tmp_path_factory.mktemp("est") / "estimator.skops")


def records(n: int, tmp_path: Path, seed: int = 0) -> list[dict]:
    log = write_log(tmp_path / f"good-{seed}.jsonl", n, seed=seed)
    return [json.loads(line) for line in log.read_text().splitlines()]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def score(log: Path, estimator: Path, *extra) -> tuple:
    out = log.parent / f"scored-{log.stem}"
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, *SCORE, "--out", out, *extra)
    assert "Traceback" not in run.stderr, run.stderr
    responses = pd.read_parquet(out / "responses.parquet") if run.returncode == 0 else None
    return run, responses


def test_a_torn_last_line_costs_only_itself(tmp_path, estimator):
    good = records(20, tmp_path)
    torn = line(good[-1])[:-400]  # a crashed logger: no newline, cut mid-record
    log = write_lines(tmp_path / "traffic.jsonl", [line(r) for r in good[:19]] + [torn])
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr
    assert len(responses) == 19 and sorted(responses["line"]) == list(range(1, 20))
    assert "skipped responses: 1 torn last line" in run.stderr
    assert f"{log}:20: the last line ends mid-record" in run.stderr


def test_line_numbers_are_the_files_own(tmp_path, estimator):
    good = records(12, tmp_path)
    lines = [line(r) for r in good[:3]] + [b"\n", b"   \n"] + [line(r) for r in good[3:7]]
    lines += [b'{"time": 1, "tenant": "a", "response": {"choices": [}\n']  # line 10
    lines += [line(r) for r in good[7:]]
    log = write_lines(tmp_path / "traffic.jsonl", lines)
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr
    assert f"{log}:10: " in run.stderr and "1 not JSON" in run.stderr
    assert sorted(responses["line"]) == [1, 2, 3, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    summary = json.loads((tmp_path / "scored-traffic" / "summary.json").read_text())
    assert summary["skipped"]["not JSON"] == 1
    assert summary["skipped_at"]["not JSON"][0].startswith(f"{log}:10: ")


def test_invalid_utf8_is_skipped_with_its_line(tmp_path, estimator):
    good = records(10, tmp_path)
    bad = [line(r).replace(b'"tenant": "', b'"tenant": "\xff') for r in good[:2]]
    bad += [line(r).replace(b'"tenant": "', b'"tenant": "\xc3') for r in good[4:5]]
    log = write_lines(tmp_path / "traffic.jsonl", bad[:1] + [line(r) for r in good[1:4]] + bad)
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr
    assert "4 invalid UTF-8" in run.stderr
    for number in (1, 5, 6, 7):
        assert f"{log}:{number}: byte " in run.stderr
    assert sorted(responses["line"]) == [2, 3, 4]


def test_empty_choices_and_error_bodies_are_skipped_and_the_message_kept(tmp_path, estimator):
    good = records(10, tmp_path)
    error = {"error": {"message": "model overloaded, try later", "type": "server_error"}}
    lines = [line({"time": 1, "tenant": "a", "response": error})]  # line 1: an error body
    empty = dict(good[0], response=dict(good[0]["response"], choices=[]))
    lines += [line(r) for r in good[1:5]] + [line(empty)] + [line(r) for r in good[5:]]
    lines += [line(error)]  # an unwrapped one too
    log = write_lines(tmp_path / "traffic.jsonl", lines)
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr
    assert "2 error body" in run.stderr and "1 empty choices" in run.stderr
    assert f"{log}:1: the server answered with an error: model overloaded, try later" in run.stderr
    assert f"{log}:12: the server answered with an error: model overloaded" in run.stderr
    assert f"{log}:6: 'choices' is empty" in run.stderr
    assert len(responses) == 9


def test_monitor_skips_records_without_a_readable_time(tmp_path, estimator):
    good = records(40, tmp_path)
    for n in (3, 17):
        del good[n]["time"]
    good[25]["time"] = "yesterday-ish"
    good[30]["time"] = 1e300
    log = write_lines(tmp_path / "traffic.jsonl", [line(r) for r in good])
    out = tmp_path / "monitor"
    run = run_cli("monitor", log, "--estimator", estimator, *WRAPPED, *SCORE, "--out", out)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "format='mixed'" not in run.stderr
    assert "2 no time" in run.stderr and "2 garbled time" in run.stderr
    assert f"{log}:4: no 'time'" in run.stderr and f"{log}:18: no 'time'" in run.stderr
    assert f"{log}:26: time 'yesterday-ish' is neither unix seconds nor ISO 8601" in run.stderr
    assert f"{log}:31: time 1e+300 is out of range" in run.stderr
    assert json.loads((out / "summary.json").read_text())["responses_scored"] == 36


@pytest.mark.parametrize("flag", ["--slice-field", "--time-field"])
def test_a_field_in_no_record_is_refused_naming_the_fields_that_exist(tmp_path, estimator, flag):
    log = write_log(tmp_path / "traffic.jsonl", 10)
    args = [a if a not in ("tenant", "time") or WRAPPED[i - 1] != flag else "team"
            for i, a in enumerate(WRAPPED)]  # fmt: skip
    run = run_cli("score", log, "--estimator", estimator, *args, *SCORE)
    assert run.returncode == 2
    assert f"{flag} 'team' is in no record; the records have ['response', 'tenant', 'time']" in (
        run.stderr
    )
    nested = run_cli("score", log, "--estimator", estimator, *WRAPPED[:2], flag, "response.x",
                     *SCORE)  # fmt: skip
    assert nested.returncode == 2 and "'response.choices', 'response.created'" in nested.stderr


def test_slice_values_are_strings_whatever_their_json_type(tmp_path, estimator):
    good = records(12, tmp_path)
    for n, record in enumerate(good):
        record["tenant"] = [3, "3", 4.5, True, None, {"b": 1}][n % 6]
    log = write_lines(tmp_path / "traffic.jsonl", [line(r) for r in good])
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr
    assert sorted(responses["slice"].unique()) == ["(none)", "3", "4.5", "true", '{"b": 1}']
    assert (responses["slice"] == "3").sum() == 4  # 3 and "3": one slice


def test_out_is_checked_before_any_work(tmp_path, estimator):
    log = write_log(tmp_path / "traffic.jsonl", 10)
    existing = tmp_path / "a-file"
    existing.write_text("x")
    missing_estimator = tmp_path / "none.skops"  # would fail later: --out is checked first
    run = run_cli("score", log, "--estimator", missing_estimator, "--out", existing)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"--out {existing}: is a file, not a folder" in run.stderr
    monitor = run_cli("monitor", log, "--estimator", missing_estimator, "--out", existing / "x")
    assert monitor.returncode == 2 and "cannot write there" in monitor.stderr
    unwritable = Path("/sys/entropy-sentinel-out")  # not writable even for root
    if os.geteuid() != 0:
        unwritable = tmp_path / "ro"
        unwritable.mkdir(mode=0o555)
    started = time.monotonic()
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, *SCORE, "--out", unwritable)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"--out {unwritable}: cannot write there" in run.stderr
    assert time.monotonic() - started < 30


def test_nothing_left_to_score_exits_2_naming_each_reason(tmp_path, estimator):
    good = records(3, tmp_path)
    empty = dict(good[0], response=dict(good[0]["response"], choices=[]))
    log = write_lines(tmp_path / "traffic.jsonl", [b"not json\n", line(empty), b'{"torn'])
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, *SCORE)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "nothing left to score (1 not JSON; 1 empty choices; 1 torn last line)" in run.stderr
    assert f"{log}:1: " in run.stderr and f"{log}:3: " in run.stderr


# ---------------------------------------------------------------- fuzz


def mutate(record: dict, rng: random.Random) -> tuple[bytes, bool]:
    """One mutation of a real-shaped record: its bytes, and whether it is still a good record
    (one the estimator must score)."""
    text = json.dumps(record)
    content = record["response"]["choices"][0]["logprobs"]["content"]
    kind = rng.choice(
        ["torn", "utf8", "latin1", "type", "missing", "huge", "nan", "empty", "error", "deep",
         "array", "narrow", "ids", "good", "good-extra"]
    )  # fmt: skip
    if kind == "torn":
        cut = rng.randrange(1, len(text) - 1)
        return text[:cut].encode() + b"\n", False
    if kind == "utf8":
        data = bytearray(text.encode())
        data[rng.randrange(len(data))] = rng.choice([0xFF, 0xC3, 0x80, 0xFE])
        return bytes(data) + b"\n", False  # may still decode (0xC3 before ASCII does not)
    if kind == "latin1":
        record["tenant"] = "café-ü"
        return json.dumps(record, ensure_ascii=False).encode("latin-1") + b"\n", False
    if kind == "type":
        step = rng.choice(content)
        key = rng.choice(["logprob", "top_logprobs", "token", "id"])
        step[key] = rng.choice(["abc", None, [], {}, True, [1, 2]])
    elif kind == "missing":
        target = rng.choice(["choices", "logprobs", "content", "logprob", "top_logprobs"])
        if target == "choices":
            del record["response"]["choices"]
        elif target == "logprobs":
            del record["response"]["choices"][0]["logprobs"]
        elif target == "content":
            del record["response"]["choices"][0]["logprobs"]["content"]
        else:
            del rng.choice(content)[target]
    elif kind == "huge":
        step = rng.choice(content)
        which = rng.choice(["logprob", "top", "id", "tenant", "time", "steps"])
        if which == "logprob":
            step["logprob"] = rng.choice([1e308, -1e308, 10**400])
        elif which == "top":
            rng.choice(step["top_logprobs"])["logprob"] = rng.choice([1e308, 5.0])
        elif which == "id":
            step["id"] = 10**30
        elif which == "tenant":
            record["tenant"] = "x" * 100_000
            return (json.dumps(record) + "\n").encode(), True  # a long key is still a key
        elif which == "time":
            record["time"] = 10**30
            return (json.dumps(record) + "\n").encode(), True  # score does not need a time
        else:
            content.extend(content * 200)
            return (json.dumps(record) + "\n").encode(), True
    elif kind == "nan":
        rng.choice(content)["logprob"] = float("nan")
    elif kind == "empty":
        record["response"]["choices"] = []
    elif kind == "error":
        record["response"] = {"error": {"message": "overloaded", "code": 503}}
    elif kind == "deep":
        return b"[" * 100_000 + b"]" * 100_000 + b"\n", False
    elif kind == "array":
        return b"[1, 2, 3]\n", False
    elif kind == "narrow":
        rng.choice(content)["top_logprobs"] = rng.choice(content)["top_logprobs"][:5]
    elif kind == "ids":  # ids as strings of digits: still readable
        for step in content:
            step["id"] = str(step["id"])
        return (json.dumps(record) + "\n").encode(), True
    elif kind == "good-extra":
        record["response"]["choices"].append({"index": 1})
        record["extra"] = {"nested": [1, 2, {"x": None}]}
        return (json.dumps(record) + "\n").encode(), True
    else:
        return (json.dumps(record) + "\n").encode(), True
    return (json.dumps(record) + "\n").encode(), False


def test_fuzz_the_log_reader_through_the_cli(tmp_path, estimator):
    """1,200 mutated records mixed with 300 good ones: no traceback, every good one scored."""
    rng = random.Random(21)
    source = records(1500, tmp_path, seed=4)
    lines, good_lines = [], []
    for n, record in enumerate(source):
        data, good = (line(record), True) if n % 5 == 0 else mutate(record, rng)
        lines.append(data)
        if good:
            good_lines.append(n + 1)
    lines[-1] = lines[-1].rstrip(b"\n")[:-3]  # and a torn last line
    if good_lines and good_lines[-1] == len(lines):
        good_lines.pop()
    log = write_lines(tmp_path / "fuzz.jsonl", lines)
    run, responses = score(log, estimator)
    assert run.returncode == 0, run.stderr[-3000:]
    scored = set(responses["line"])
    assert set(good_lines) <= scored, sorted(set(good_lines) - scored)[:10]
    summary = json.loads((tmp_path / "scored-fuzz" / "summary.json").read_text())
    skipped = sum(summary["skipped"].values())
    assert len(scored) + skipped == len(lines)  # every line is scored or counted
    assert len(good_lines) >= 300 and skipped >= 700
    assert np.isfinite(responses["p_correct"]).all()
    for reason, where in summary["skipped_at"].items():
        assert all(w.startswith(f"{log}:") for w in where), reason
    print(f"fuzz: {len(lines)} lines, {len(good_lines)} good, {len(scored)} scored, "
          f"skipped {summary['skipped']}")  # fmt: skip
