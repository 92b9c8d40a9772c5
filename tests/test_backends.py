"""The transformers backend on the tiny model: capture vs a reference, batching equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from entropy_sentinel.generate.backends import GenerationSettings, marker_token_ids, reasoning_mask
from entropy_sentinel.generate.backends.transformers_backend import TransformersBackend

BASE = GenerationSettings(temperature=0, batch_size=1)
ATOL = 1e-4  # float32 logprobs: batched (padded, reordered) vs unbatched

QUESTIONS = [
    "What is 3 + 4?",
    "Ava has 5 apples. Then Ava gets 2 more apples. How many apples does Ava have now?",
    "Ben gives away 3 marbles.",
    "The sum of 21 and 34 is 55. The product of 6 and 7 is 42. Chloe has 9 coins.",
    "12 - 5",
    "Let's think step by step. 12 - 5 = 7, so the answer is 7. What is 6 and 7?",
]


@pytest.fixture(scope="module")
def backend(tiny_model):
    torch.set_num_threads(1)
    return TransformersBackend(str(tiny_model), BASE)


def _prompts(backend) -> dict[str, str]:
    return {
        f"q{i}": backend.render_prompt([{"role": "user", "content": q}])
        for i, q in enumerate(QUESTIONS)
    }


def _run(backend, prompts, **changes) -> dict[str, dict]:
    backend.settings = BASE.replace(**changes)
    return {row["item_id"]: row for row in backend.stream(prompts)}


def _assert_same(rows, reference):
    assert rows.keys() == reference.keys()
    for item_id, ref in reference.items():
        row = rows[item_id]
        assert row["token_ids"] == ref["token_ids"], item_id
        assert row["topk_token_ids"] == ref["topk_token_ids"], item_id
        for column in ("topk_logprobs", "sampled_logprobs", "full_entropy"):
            np.testing.assert_allclose(row[column], ref[column], atol=ATOL, err_msg=column)


@pytest.mark.parametrize("batching", ["static", "compact", "refill"])
def test_batched_equals_unbatched(backend, batching):
    prompts = _prompts(backend)
    common = dict(max_new_tokens=24, top_k_logprobs=5)
    alone = _run(backend, prompts, batch_size=1, batching="static", **common)
    batched = _run(backend, prompts, batch_size=4, batching=batching, **common)
    _assert_same(batched, alone)
    assert {r["finish_reason"] for r in alone.values()} <= {"stop", "length"}


def test_sampling_is_batch_invariant(backend):
    prompts = _prompts(backend)
    common = dict(max_new_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    alone = _run(backend, prompts, batch_size=1, **common)
    batched = _run(backend, prompts, batch_size=3, batching="refill", **common)
    _assert_same(batched, alone)
    other_seed = _run(backend, prompts, batch_size=3, **{**common, "seed": 8})
    assert any(other_seed[i]["token_ids"] != alone[i]["token_ids"] for i in alone)


def test_capture_matches_generate_reference(backend):
    """Top-k and sampled log-probs equal log_softmax of ``generate(output_logits=True)``."""
    prompts = _prompts(backend)
    k = 5
    rows = _run(backend, prompts, batch_size=4, max_new_tokens=12, top_k_logprobs=k)
    tok = backend.tokenizer
    for item_id, text in prompts.items():
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        out = backend.model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=12,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id,
        )
        generated = out.sequences[0, enc["input_ids"].shape[1] :].tolist()
        logp = torch.log_softmax(torch.cat(out.logits).float(), dim=-1)
        row = rows[item_id]
        assert row["token_ids"] == generated
        top = logp.topk(k, dim=-1)
        np.testing.assert_allclose(row["topk_logprobs"], top.values.numpy(), atol=ATOL)
        assert row["topk_token_ids"] == top.indices.tolist()
        sampled = logp.gather(1, torch.tensor(generated)[:, None]).squeeze(1)
        np.testing.assert_allclose(row["sampled_logprobs"], sampled.numpy(), atol=ATOL)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        np.testing.assert_allclose(row["full_entropy"], entropy.numpy(), atol=ATOL)
        assert all(row["sampled_in_topk"])  # greedy: the argmax is always in the top-k
        assert row["logprobs_mode"] == "raw"


def test_processed_mode_is_post_temperature(backend):
    """Processed log-probs are log_softmax(logits / T) of a teacher-forced forward pass."""
    prompts = dict(list(_prompts(backend).items())[:2])
    T = 0.5
    common = dict(batch_size=2, max_new_tokens=8, temperature=T)
    rows = _run(backend, prompts, logprobs_mode="processed", **common)
    raw = _run(backend, prompts, logprobs_mode="raw", **common)
    for item_id, text in prompts.items():
        row = rows[item_id]
        assert row["token_ids"] == raw[item_id]["token_ids"]  # capture never changes sampling
        prompt = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + row["token_ids"]])
        with torch.no_grad():
            logits = backend.model(ids).logits[0, len(prompt) - 1 : -1].float()
        for mode_rows, scale in ((rows, T), (raw, 1.0)):
            logp = torch.log_softmax(logits / scale, dim=-1)
            expected = logp.gather(1, torch.tensor(row["token_ids"])[:, None]).squeeze(1)
            np.testing.assert_allclose(mode_rows[item_id]["sampled_logprobs"], expected, atol=ATOL)
        assert row["logprobs_mode"] == "processed"


def test_context_limit_truncates_and_skips(backend):
    prompts = _prompts(backend)
    lengths = {i: backend.token_count(p) for i, p in prompts.items()}
    longest = max(lengths, key=lengths.get)
    context = lengths[longest]  # the longest prompt leaves no room at all
    backend.context = context
    try:
        rows = _run(backend, prompts, batch_size=4, max_new_tokens=64, temperature=0)
    finally:
        backend.context = backend.model.config.max_position_embeddings
    assert rows[longest]["finish_reason"] == "error" and "exceeds context" in rows[longest]["error"]
    for item_id, row in rows.items():
        if item_id != longest:
            assert lengths[item_id] + row["n_tokens"] <= context
            if row["finish_reason"] == "length":
                assert row["n_tokens"] == min(64, context - lengths[item_id])


def test_out_of_memory_halves_the_batch(backend, monkeypatch):
    prompts = _prompts(backend)
    expected = _run(backend, prompts, batch_size=1, max_new_tokens=10)
    forward = backend.model.forward
    sizes = []

    def flaky(*args, **kwargs):
        rows = kwargs["input_ids"].shape[0]
        sizes.append(rows)
        if rows > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(backend.model, "forward", flaky)
    rows = _run(backend, prompts, batch_size=8, max_new_tokens=10)
    assert max(sizes) > 2 and all(r["error"] is None for r in rows.values())
    _assert_same(rows, expected)


def test_other_failures_become_error_rows(backend, monkeypatch):
    prompts = _prompts(backend)
    forward = backend.model.forward

    def broken(*args, **kwargs):
        if kwargs["input_ids"].shape[1] > 20:
            raise ValueError("bad input")
        return forward(*args, **kwargs)

    monkeypatch.setattr(backend.model, "forward", broken)
    rows = _run(backend, prompts, batch_size=1, max_new_tokens=4)
    assert rows.keys() == prompts.keys()
    failed = {i for i, r in rows.items() if r["finish_reason"] == "error"}
    assert failed and failed != set(prompts)


def test_reasoning_mask():
    think = ([10], [11])
    assert reasoning_mask([1, 10, 2, 3, 11, 4], [think]) == [0, 1, 1, 1, 1, 0]
    assert reasoning_mask([2, 11, 4], [think], prompt_ids=[5, 10]) == [1, 1, 0]
    assert reasoning_mask([1, 10, 2], [think]) == [0, 1, 1]
    harmony = ([20, 21, 22], [23])  # <|channel|> analysis <|message|> … <|end|>
    assert reasoning_mask([20, 21, 22, 5, 23, 20, 30, 22, 6], [harmony]) == [1] * 5 + [0] * 4
    assert reasoning_mask([1, 2], []) == [False, False]


def test_markers_only_when_the_vocabulary_has_them(backend):
    assert marker_token_ids(backend.tokenizer) == []
    pairs = marker_token_ids(backend.tokenizer, [["<|assistant|>", "</s>"]])
    assert pairs == [([backend.tokenizer.convert_tokens_to_ids("<|assistant|>")], [2])]
    rows = _run(backend, dict(list(_prompts(backend).items())[:2]), max_new_tokens=6)
    assert all(not any(r["is_reasoning"]) for r in rows.values())
    assert all(len(r["is_reasoning"]) == r["n_tokens"] for r in rows.values())


@pytest.mark.parametrize("batching", ["compact", "refill"])
def test_rows_finishing_at_different_steps(backend, batching):
    """Staggered finishes: rows are dropped (and refilled) mid-batch, outputs unchanged."""
    from entropy_sentinel.generate.backends.transformers_backend import Decoder, Request

    tok = backend.tokenizer
    limits = [3, 17, 5, 11, 2, 20]
    requests = [
        Request(item_id, tok(text, add_special_tokens=False)["input_ids"], n, limit)
        for n, ((item_id, text), limit) in enumerate(
            zip(_prompts(backend).items(), limits, strict=True)
        )
    ]
    requests.sort(key=lambda r: len(r.ids))  # admitted prompts get longer: both pad directions

    def run(rows, policy):
        s = BASE.replace(max_new_tokens=20, top_k_logprobs=5, batching=policy, temperature=0.9)
        decoder = Decoder(backend.model, [], s, rows, 1 << 20)
        return {r["item_id"]: r for r in decoder.run(requests)}, decoder.computed_tokens

    alone, _ = run(1, "static")
    static, static_cost = run(3, "static")
    batched, cost = run(3, batching)
    assert cost < static_cost and cost >= sum(limits)
    for item_id, ref in alone.items():
        assert len(ref["tokens"]) == limits[int(item_id[1:])]
        for out in (static, batched):
            assert torch.equal(out[item_id]["tokens"], ref["tokens"])
            for key in ("topk_logprobs", "sampled_logprobs", "full_entropy"):
                torch.testing.assert_close(out[item_id][key], ref[key], atol=ATOL, rtol=0)
