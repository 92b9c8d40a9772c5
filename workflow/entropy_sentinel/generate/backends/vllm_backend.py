"""The vLLM backend (optional extra): offline ``LLM`` with per-step log-probabilities.

vLLM returns, per step, a dict ``token_id -> Logprob(logprob, rank, decoded_token)`` holding
the top-k and, when the sampled token falls outside them, that token too (k or k+1 entries).
The top-k are the entries of rank 1..k (vLLM's own ranking, so ties keep its order) and go to
``topk_*``; the sampled token's log-prob goes to ``sampled_logprobs`` and whether it was among
the top-k to ``sampled_in_topk``. Each item samples with its own seed, derived from
``(seed, item_id)``, so its tokens do not depend on the batch it landed in. Per-model engine
arguments (``models.{name}.engine_args``) are passed to ``vllm.LLM``. vLLM reports no
full-vocabulary entropy, so ``full_entropy`` is null.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from entropy_sentinel.generate.backends.base import (
    GenerationSettings,
    error_row,
    item_seed,
    marker_token_ids,
    reasoning_mask,
    render_chat,
)

log = logging.getLogger(__name__)

VLLM_LOGPROBS_MODE = {"raw": "raw_logprobs", "processed": "processed_logprobs"}


class VLLMBackend:
    """Generate with ``vllm.LLM``; rows match the transformers backend's schema."""

    name = "vllm"

    def __init__(
        self, weights_dir: str, settings: GenerationSettings, options: dict | None = None, llm=None
    ):
        # options: vLLM engine arguments, over generation.settings.extra.vllm
        self.settings = settings
        s = settings
        self.engine_args = {**s.extra.get("vllm", {}), **(options or {})}
        if llm is None:
            from vllm import LLM

            llm = LLM(
                model=weights_dir,
                trust_remote_code=s.trust_remote_code,
                dtype="bfloat16" if s.dtype == "auto" else s.dtype,
                seed=s.seed,
                max_logprobs=s.top_k_logprobs,
                max_model_len=s.max_model_len,
                logprobs_mode=VLLM_LOGPROBS_MODE[s.logprobs_mode],
                **self.engine_args,
            )
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.eos_ids = sorted({i for i in [self.tokenizer.eos_token_id] if i is not None})
        self.markers = marker_token_ids(self.tokenizer, s.reasoning_markers)

    def sampling_params(self, item_id: str):
        from vllm import SamplingParams

        s = self.settings
        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            seed=item_seed(s.seed, item_id) % (1 << 31),
            max_tokens=s.max_new_tokens,
            logprobs=s.top_k_logprobs,
        )

    def render_prompt(self, messages: list[dict]) -> str:
        return render_chat(self.tokenizer, messages, self.settings)

    def provenance(self) -> dict:
        import vllm

        return {
            "backend": self.name,
            "engine_version": getattr(vllm, "__version__", None),
            "engine": "V1",  # vLLM >= 0.10 has only the V1 engine
            "logprobs_mode": self.settings.logprobs_mode,
            "vllm_logprobs_mode": VLLM_LOGPROBS_MODE[self.settings.logprobs_mode],
            "topk_includes_sampled": False,
            "eos_token_ids": self.eos_ids,
            "reasoning_markers": self.markers,
            "engine_args": self.engine_args,
            "seeds": "per item: sha256(seed, item_id)",
        }

    def stream(self, prompts: dict[str, str], chunk: int = 256) -> Iterator[dict]:
        """Rows in item order, ``chunk`` prompts per ``LLM.generate`` call."""
        ids = list(prompts)
        for start in range(0, len(ids), chunk):
            batch = ids[start : start + chunk]
            try:
                params = [self.sampling_params(i) for i in batch]
                outputs = self.llm.generate([self._tokens(prompts[i]) for i in batch], params)
            except Exception as error:  # noqa: BLE001 - one bad chunk must not lose the shard
                log.exception("vLLM failed on %d prompts", len(batch))
                yield from (error_row(i, error) for i in batch)
                continue
            for item_id, output in zip(batch, outputs, strict=True):
                yield convert_output(item_id, output, self.settings, self.eos_ids, self.markers)

    def _tokens(self, text: str) -> dict:
        # The rendered template already holds BOS; vLLM would add another to a text prompt.
        return {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]}

    def generate(self, item_ids: Sequence[str], prompts: Sequence[str]) -> list[dict]:
        return list(self.stream(dict(zip(item_ids, prompts, strict=True))))


def convert_output(item_id: str, output, settings: GenerationSettings, eos_ids, markers) -> dict:
    """One ``vllm.RequestOutput`` as a row of ``GENERATION_COLUMNS``."""
    k = settings.top_k_logprobs
    completion = output.outputs[0]
    token_ids = list(completion.token_ids)
    sampled, in_topk, topk_ids, topk_lps = [], [], [], []
    for token, step in zip(token_ids, completion.logprobs or [], strict=True):
        ranked = sorted(
            ((t, lp) for t, lp in step.items() if lp.rank is not None and lp.rank <= k),
            key=lambda kv: kv[1].rank,
        )
        topk_ids.append([int(t) for t, _ in ranked])
        topk_lps.append([float(lp.logprob) for _, lp in ranked])
        sampled.append(float(step[token].logprob))
        in_topk.append(token in topk_ids[-1])
    finish = completion.finish_reason  # "stop" (EOS or stop string) or "length"
    prompt_ids = list(output.prompt_token_ids or [])
    return {
        "item_id": item_id,
        "prompt_tokens": len(prompt_ids),
        "response": completion.text,
        "token_ids": token_ids,
        "sampled_logprobs": sampled,
        "topk_token_ids": topk_ids,
        "topk_logprobs": topk_lps,
        "full_entropy": None,
        "n_tokens": len(token_ids),
        "finish_reason": "length" if finish == "length" else "stop",
        "error": None,
        "sampled_in_topk": in_topk,
        "is_reasoning": reasoning_mask(token_ids, markers, prompt_ids),
        "logprobs_mode": settings.logprobs_mode,
    }
