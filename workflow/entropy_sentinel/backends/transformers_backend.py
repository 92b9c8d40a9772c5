"""The transformers backend: a batched decoding loop that captures top-k log-probabilities.

The loop is written out (rather than calling ``generate`` with ``output_scores``) so that
capture happens on the device as each step is decoded, from the raw logits, into buffers of
size ``batch × max_new_tokens × k``: memory is O(steps × k), never O(steps × vocabulary).

Sampling uses the Gumbel-max trick with one random stream per item, seeded from
``(seed, item_id)``, so an item's sampled tokens do not depend on which batch it landed in:
a resumed or re-sharded run reproduces an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections.abc import Iterator, Sequence

import torch

from . import GenerationSettings

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, requested)


def item_seed(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:8], "little") >> 1


class TransformersBackend:
    """Load a Hugging Face causal LM once and generate batches with entropy capture."""

    name = "transformers"

    def __init__(self, weights_dir: str, settings: GenerationSettings):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.device = pick_device(settings.device)
        dtype = pick_dtype(settings.dtype, self.device)
        trust = settings.trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(weights_dir, trust_remote_code=trust)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            weights_dir, dtype=dtype, trust_remote_code=trust, attn_implementation="sdpa"
        ).to(self.device)
        self.model.eval()
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    def render_prompt(self, messages: list[dict]) -> str:
        """Apply the model's chat template (a plain transcript if it has none)."""
        if self.settings.system_prompt:
            messages = [{"role": "system", "content": self.settings.system_prompt}, *messages]
        if self.tokenizer.chat_template:
            kwargs = {}
            if self.settings.enable_thinking is not None:
                kwargs["enable_thinking"] = self.settings.enable_thinking
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **kwargs
            )
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(turns) + "\nAssistant:"

    def provenance(self) -> dict:
        return {
            "backend": self.name,
            "device": str(self.device),
            "dtype": str(self.model.dtype),
            "eos_token_ids": self.eos_ids,
            "chat_template": bool(self.tokenizer.chat_template),
            "vocab_size": int(self.model.config.vocab_size),
        }

    def token_count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def batches(self, prompts: dict[str, str]) -> Iterator[list[str]]:
        """Item ids grouped into batches, sorted by prompt length, within a token budget."""
        lengths = {item_id: self.token_count(text) for item_id, text in prompts.items()}
        order = sorted(prompts, key=lambda item_id: (lengths[item_id], item_id))
        s = self.settings
        batch: list[str] = []
        for item_id in order:
            longest = max([lengths[i] for i in batch] + [lengths[item_id]])
            cost = (len(batch) + 1) * (longest + s.max_new_tokens)
            if batch and (len(batch) >= s.batch_size or cost > s.max_batch_tokens):
                yield batch
                batch = []
            batch.append(item_id)
        if batch:
            yield batch

    @torch.inference_mode()
    def generate(self, item_ids: Sequence[str], prompts: Sequence[str]) -> list[dict]:
        """Generate one batch; returns one row per item (see ``GENERATION_COLUMNS``)."""
        s = self.settings
        enc = self.tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        captured = decode(
            self.model,
            enc["input_ids"],
            enc["attention_mask"],
            eos_ids=self.eos_ids,
            settings=s,
            seeds=[item_seed(s.seed, i) for i in item_ids],
        )
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        rows = []
        for row, item_id in enumerate(item_ids):
            n = int(captured["lengths"][row])
            ids = captured["tokens"][row, :n].tolist()
            stopped = n > 0 and ids[-1] in self.eos_ids
            rows.append(
                {
                    "item_id": item_id,
                    "prompt_tokens": int(prompt_tokens[row]),
                    "response": self.tokenizer.decode(ids, skip_special_tokens=True),
                    "token_ids": ids,
                    "sampled_logprobs": captured["sampled_logprobs"][row, :n].tolist(),
                    "topk_token_ids": captured["topk_ids"][row, :n].tolist(),
                    "topk_logprobs": captured["topk_logprobs"][row, :n].tolist(),
                    "full_entropy": captured["full_entropy"][row, :n].tolist(),
                    "n_tokens": n,
                    "finish_reason": "stop" if stopped else "length",
                    "error": None,
                }
            )
        return rows


def decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    eos_ids: Sequence[int],
    settings: GenerationSettings,
    seeds: Sequence[int],
) -> dict[str, torch.Tensor]:
    """Batched incremental decoding with top-k capture; returns CPU tensors.

    Rows are left-padded. A row stops at its first EOS; finished rows keep being fed EOS
    (their outputs are masked) until every row is done or ``max_new_tokens`` is reached.
    """
    from transformers import DynamicCache

    s = settings
    device = input_ids.device
    batch, k, steps = input_ids.shape[0], s.top_k_logprobs, s.max_new_tokens
    eos = torch.tensor(list(eos_ids), device=device)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    tokens = torch.zeros(batch, steps, dtype=torch.long, device=device)
    sampled = torch.zeros(batch, steps, dtype=torch.float32, device=device)
    topk_lp = torch.zeros(batch, steps, k, dtype=torch.float32, device=device)
    topk_ids = torch.zeros(batch, steps, k, dtype=torch.int32, device=device)
    entropy = torch.zeros(batch, steps, dtype=torch.float32, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)

    cache = {_cache_kwarg(model): DynamicCache()}
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **cache,
    ).logits[:, -1, :]
    start = time.perf_counter()
    for step in range(steps):
        logits = logits.float()
        raw = torch.log_softmax(logits, dim=-1)
        processed = _processed_logits(logits, s)
        captured = raw if s.logprobs_mode == "raw" else torch.log_softmax(processed, dim=-1)
        top_values, top_indices = captured.topk(k, dim=-1)
        next_token = _choose(processed, s.temperature, generators)
        next_token = torch.where(finished, eos[0], next_token)

        active = ~finished
        tokens[:, step] = next_token
        sampled[:, step] = captured.gather(1, next_token[:, None]).squeeze(1)
        topk_lp[:, step] = top_values
        topk_ids[:, step] = top_indices.to(torch.int32)
        entropy[:, step] = -(captured.exp() * captured).nan_to_num().sum(dim=-1)
        lengths += active.long()
        finished |= torch.isin(next_token, eos)
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        positions = positions[:, -1:] + 1
        logits = model(
            input_ids=next_token[:, None],
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
            **cache,
        ).logits[:, -1, :]
    log.debug("decoded %d steps in %.2fs", step + 1, time.perf_counter() - start)
    out = {
        "tokens": tokens,
        "sampled_logprobs": sampled,
        "topk_logprobs": topk_lp,
        "topk_ids": topk_ids,
        "full_entropy": entropy,
        "lengths": lengths,
    }
    return {name: tensor.cpu() for name, tensor in out.items()}


def _cache_kwarg(model) -> str:
    # transformers 5 renamed `past_key_values` to `cache`.
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _processed_logits(logits: torch.Tensor, s: GenerationSettings) -> torch.Tensor:
    """Temperature and nucleus filtering, as the sampler sees them."""
    if s.temperature <= 0:
        return logits
    scaled = logits / s.temperature
    if s.top_p < 1.0:
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) > s.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        scaled = torch.full_like(scaled, float("-inf")).scatter(1, order, sorted_logits)
    return scaled


def _choose(processed: torch.Tensor, temperature: float, generators) -> torch.Tensor:
    """Greedy, or Gumbel-max sampling with one random stream per row."""
    if temperature <= 0:
        return processed.argmax(dim=-1)
    noise = torch.stack(
        [torch.rand(processed.shape[1], generator=g, device=processed.device) for g in generators]
    )
    gumbel = -torch.log(-torch.log(noise.clamp_min(1e-20)))
    return (processed + gumbel).argmax(dim=-1)
