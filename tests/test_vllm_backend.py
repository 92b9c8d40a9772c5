"""Conversion of vLLM outputs into generation rows.

vLLM cannot run here (no GPU), so these tests fake the engine's output objects
(``RequestOutput``/``CompletionOutput``/``Logprob``) with the same attributes and check the
conversion: top-k vs the extra sampled entry, ``sampled_in_topk``, finish reasons, schema.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from entropy_sentinel.generate.backends import GENERATION_COLUMNS, GenerationSettings
from entropy_sentinel.generate.backends.vllm_backend import VLLMBackend, convert_output


def _lp(value: float, rank: int):
    return SimpleNamespace(logprob=value, rank=rank, decoded_token=None)


def _output(token_ids, steps, finish="stop", prompt=(1, 2, 3)):
    completion = SimpleNamespace(
        token_ids=token_ids, logprobs=steps, finish_reason=finish, text="decoded"
    )
    return SimpleNamespace(outputs=[completion], prompt_token_ids=list(prompt))


K2 = GenerationSettings(top_k_logprobs=2, logprobs_mode="processed")


def test_sampled_outside_topk_is_kept_separately():
    steps = [
        {5: _lp(-0.1, 1), 6: _lp(-2.5, 2)},  # sampled 5, inside: k entries
        {7: _lp(-0.3, 1), 8: _lp(-1.6, 2), 9: _lp(-4.0, 9)},  # sampled 9, outside: k+1
    ]
    row = convert_output("a", _output([5, 9], steps, finish="length"), K2, [0], [])
    assert set(row) == set(GENERATION_COLUMNS)
    assert row["topk_token_ids"] == [[5, 6], [7, 8]]
    assert row["topk_logprobs"] == [[-0.1, -2.5], [-0.3, -1.6]]
    assert row["sampled_logprobs"] == [-0.1, -4.0]
    assert row["sampled_in_topk"] == [True, False]
    assert row["finish_reason"] == "length" and row["n_tokens"] == 2
    assert row["prompt_tokens"] == 3 and row["full_entropy"] is None
    assert row["logprobs_mode"] == "processed" and row["is_reasoning"] == [False, False]


def test_reasoning_tokens_are_flagged():
    steps = [{t: _lp(-0.5, 1), 99: _lp(-1.0, 2)} for t in (40, 3, 41, 4)]
    row = convert_output("b", _output([40, 3, 41, 4], steps), K2, [0], [([40], [41])])
    assert row["is_reasoning"] == [True, True, True, False]
    assert row["finish_reason"] == "stop"


class _FakeTokenizer:
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    def get_vocab(self):
        return {}


class _FakeLLM:
    def __init__(self, fail_on=None):
        self.fail_on = fail_on

    def get_tokenizer(self):
        return _FakeTokenizer()

    def generate(self, prompts, params):
        if {"prompt_token_ids": [ord(c) for c in self.fail_on]} in prompts:
            raise RuntimeError("engine died")
        return [_output([1, 0], [{1: _lp(-0.2, 1)}, {0: _lp(-0.1, 1)}]) for _ in prompts]


def test_backend_stream_with_a_fake_engine(monkeypatch):
    backend = VLLMBackend("unused", GenerationSettings(top_k_logprobs=1), llm=_FakeLLM("p3"))
    monkeypatch.setattr(backend, "sampling_params", lambda item_id: None)
    prompts = {f"i{n}": f"p{n}" for n in range(5)}
    rows = list(backend.stream(prompts, chunk=2))
    assert [r["item_id"] for r in rows] == list(prompts)
    assert [r["finish_reason"] for r in rows] == ["stop", "stop", "error", "error", "stop"]
    assert rows[0]["token_ids"] == [1, 0] and rows[0]["sampled_in_topk"] == [True, True]


class _RecordingLLM:
    """Stands in for ``vllm.LLM`` (vLLM cannot run here: no GPU); records its arguments."""

    created: list[dict] = []

    def __init__(self, **kwargs):
        self.created.append(kwargs)

    def get_tokenizer(self):
        return _FakeTokenizer()


@pytest.mark.parametrize(
    "mode, engine_mode", [("raw", "raw_logprobs"), ("processed", "processed_logprobs")]
)
def test_the_engine_is_built_with_the_configured_logprobs(monkeypatch, mode, engine_mode):
    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=_RecordingLLM))
    VLLMBackend("weights", GenerationSettings(top_k_logprobs=7, logprobs_mode=mode, seed=3))
    engine = _RecordingLLM.created[-1]
    assert engine["model"] == "weights" and engine["logprobs_mode"] == engine_mode
    assert engine["max_logprobs"] == 7 and engine["seed"] == 3


def test_without_the_vllm_extra_the_backend_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what Python does when vLLM is not installed
    with pytest.raises(ImportError, match="vllm"):
        VLLMBackend("unused", GenerationSettings())


def test_topk_follows_vllm_rank_not_float_order():
    # equal log-probs: vLLM's rank decides; the sampled token (rank 7) is outside the top 2
    steps = [{3: _lp(-1.0, 2), 4: _lp(-1.0, 1), 9: _lp(-5.0, 7)}]
    row = convert_output("a", _output([9], steps), K2, [0], [])
    assert row["topk_token_ids"] == [[4, 3]] and row["sampled_in_topk"] == [False]
    assert row["sampled_logprobs"] == [-5.0]


@pytest.fixture()
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` module (vLLM needs a GPU): records what the backend passes to it."""
    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["engine"] = kwargs

        def get_tokenizer(self):
            return _FakeTokenizer()

        def generate(self, prompts, params):
            calls["params"] = params
            return [_output([1, 0], [{1: _lp(-0.2, 1)}, {0: _lp(-0.1, 1)}]) for _ in prompts]

    module = SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw, __version__="0.0-fake")
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_per_item_seeds_and_per_model_engine_args(fake_vllm):
    settings = GenerationSettings(top_k_logprobs=1, seed=5, extra={"vllm": {"enforce_eager": True}})
    backend = VLLMBackend("weights", settings, {"gpu_memory_utilization": 0.5})
    assert fake_vllm["engine"]["gpu_memory_utilization"] == 0.5
    assert fake_vllm["engine"]["enforce_eager"] is True
    assert fake_vllm["engine"]["logprobs_mode"] == "raw_logprobs"
    backend.generate(["x", "y"], ["p", "q"])
    first = [p["seed"] for p in fake_vllm["params"]]
    backend.generate(["y", "x"], ["q", "p"])
    second = [p["seed"] for p in fake_vllm["params"]]
    assert first[0] != first[1] and first == second[::-1]  # the seed follows the item
    assert backend.provenance()["engine_args"] == {
        "enforce_eager": True,
        "gpu_memory_utilization": 0.5,
    }
