"""The streaming reader: a log read in small batches gives what it gives read whole (steps,
responses, skipped counts and their first lines), and the array fast path for regular
llama-server responses reads exactly what the backend's parser (``token_steps``) reads."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from test_cli import fit_estimator
from test_traffic_lines import line, mutate, records, write_lines

from entropy_sentinel.estimate.classifier import load_estimator
from entropy_sentinel.serve.logs import EXAMPLES, LogFormat, TrafficError, iter_log, read_log
from entropy_sentinel.serve.monitor import score_logs
from entropy_sentinel.serve.scoring import slice_table

FMT = LogFormat("response", "tenant", "time", logprobs_mode="raw")


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    return load_estimator(fit_estimator(tmp_path_factory.mktemp("est") / "estimator.skops"))


@pytest.fixture(scope="module")
def mixed_log(tmp_path_factory):
    """300 records: every third mutated (torn, not JSON, narrow, NaN, ids as text, ...)."""
    tmp = tmp_path_factory.mktemp("log")
    rng = random.Random(5)
    lines = [line(r) if n % 3 else mutate(r, rng)[0] for n, r in enumerate(records(300, tmp))]
    return write_lines(tmp / "mixed.jsonl", lines)


def whole_and_batched(path, k=20, **limits):
    whole = read_log(path, FMT, k, allow_empty=True)
    batches = list(iter_log(path, FMT, k, **limits))
    return whole, batches


@pytest.mark.parametrize("limits", [{"batch_bytes": 20_000}, {"batch_responses": 7}])
def test_batches_hold_what_the_whole_log_holds(mixed_log, limits):
    whole, batches = whole_and_batched(mixed_log, **limits)
    assert len(batches) > 5 and len(whole) > 150
    assert max(len(b) for b in batches) <= limits.get("batch_responses", 10**9)
    meta = pd.concat([b.meta for b in batches if len(b)], ignore_index=True)
    pd.testing.assert_frame_equal(meta, whole.meta)
    for name in ("topk", "sampled", "in_topk"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(b, name) for b in batches]), getattr(whole, name)
        )
    lengths = np.concatenate([np.diff(b.offsets) for b in batches])
    np.testing.assert_array_equal(lengths, np.diff(whole.offsets))
    counts: dict[str, int] = {}
    for b in batches:
        for reason, n in b.skipped.items():
            counts[reason] = counts.get(reason, 0) + n
    assert counts == whole.skipped and sum(counts.values()) > 50


def test_scoring_in_batches_scores_what_one_batch_scores(mixed_log, estimator):
    one_at, small_at = {}, {}
    whole, skipped = score_logs(estimator, [mixed_log], FMT, skipped_at=one_at, batch_bytes=None)
    small, small_skipped = score_logs(
        estimator, [mixed_log], FMT, skipped_at=small_at, batch_bytes=15_000
    )
    pd.testing.assert_frame_equal(small, whole)
    assert small_skipped == skipped
    assert small_at == one_at  # the first few of each reason, in file order
    assert all(len(where) <= EXAMPLES for where in small_at.values())
    pd.testing.assert_frame_equal(
        slice_table(estimator, small)[0], slice_table(estimator, whole)[0]
    )


def test_the_fast_path_reads_what_the_backend_parser_reads(tmp_path):
    """The same responses with their ids as digit strings, or their top entries shuffled,
    take ``token_steps``: the arrays must not change."""
    good = records(40, tmp_path, seed=3)
    for record in good:  # some sampled tokens outside the top 20 (sampling at temperature)
        for step in record["response"]["choices"][0]["logprobs"]["content"][::3]:
            step["id"] = 10**6
    plain = write_lines(tmp_path / "plain.jsonl", [line(r) for r in good])
    rng = random.Random(0)
    texts, shuffled = [], []
    for record in good:
        slow = json.loads(json.dumps(record))
        for step in slow["response"]["choices"][0]["logprobs"]["content"]:
            step["id"] = str(step["id"])
        texts.append(line(slow))
        mixed = json.loads(json.dumps(record))
        for step in mixed["response"]["choices"][0]["logprobs"]["content"]:
            rng.shuffle(step["top_logprobs"])
        shuffled.append(line(mixed))
    reference = read_log(plain, FMT, 20)
    for variant in (texts, shuffled):
        batch = read_log(write_lines(tmp_path / "variant.jsonl", variant), FMT, 20)
        np.testing.assert_array_equal(batch.topk, reference.topk)
        np.testing.assert_array_equal(batch.sampled, reference.sampled)
        np.testing.assert_array_equal(batch.in_topk, reference.in_topk)
    assert 0 < reference.in_topk.mean() < 1  # both cases occur


def test_a_narrower_k_cuts_and_ranks_the_same_either_way(tmp_path):
    """k=5 of 20: the sampled token is in the top 5 only where its rank says so."""
    good = records(30, tmp_path, seed=8)
    log = write_lines(tmp_path / "t.jsonl", [line(r) for r in good])
    batch = read_log(log, FMT, 5)
    steps = [s for r in good for s in r["response"]["choices"][0]["logprobs"]["content"]]
    expected = [s["id"] in [t["id"] for t in s["top_logprobs"][:5]] for s in steps]
    np.testing.assert_array_equal(batch.in_topk, expected)
    assert batch.topk.shape == (len(steps), 5)


def test_without_k_the_first_batch_fixes_it(tmp_path):
    wide = records(10, tmp_path, seed=1)
    narrow = json.loads(json.dumps(wide[0]))
    for step in narrow["response"]["choices"][0]["logprobs"]["content"]:
        step["top_logprobs"] = step["top_logprobs"][:10]
    log = write_lines(tmp_path / "t.jsonl", [line(r) for r in wide] + [line(narrow)])
    batches = list(iter_log(log, FMT, None, batch_responses=4))
    assert {b.k for b in batches} == {20}
    assert sum(len(b) for b in batches) == 10
    assert sum(b.skipped.get("fewer top log-probs than k", 0) for b in batches) == 1


def test_a_field_in_no_record_is_refused_after_the_last_batch(tmp_path):
    log = write_lines(tmp_path / "t.jsonl", [line(r) for r in records(20, tmp_path)])
    with pytest.raises(TrafficError, match="--slice-field 'team' is in no record"):
        list(iter_log(log, LogFormat("response", "team"), 20, batch_responses=3))


def test_regular_responses_do_not_go_through_the_slow_parser(tmp_path, monkeypatch):
    import entropy_sentinel.serve.logs as logs

    log = write_lines(tmp_path / "t.jsonl", [line(r) for r in records(20, tmp_path)])
    monkeypatch.setattr(logs, "token_steps", lambda choice: pytest.fail("token_steps was used"))
    assert len(read_log(log, FMT, 20)) == 20
