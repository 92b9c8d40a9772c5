"""What every generation backend shares: the row layout (``GENERATION_COLUMNS``), the
decoding settings, the ``Backend`` interface, and helpers for chat templates, reasoning spans
and per-item seeds. Later stages do not care which engine produced a file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from entropy_sentinel.config.loading import schema_defaults

GENERATION_COLUMNS = (
    "item_id",
    "prompt_tokens",
    "response",
    "token_ids",  # list[int]: generated ids, EOS included
    "sampled_logprobs",  # list[float]: log p(y_t) of each generated token
    "topk_token_ids",  # list[list[int]]: k ids per step
    "topk_logprobs",  # list[list[float]]: k log-probs per step, descending
    "full_entropy",  # list[float]: full-vocabulary entropy per step (null where unavailable)
    "n_tokens",
    "finish_reason",  # "stop" (EOS), "length" (max_new_tokens or context hit), or "error"
    "error",  # null, or why this item produced no output
    "sampled_in_topk",  # list[bool]: whether y_t is among that step's top-k
    "is_reasoning",  # list[bool]: token lies inside a reasoning span (<think>…</think> etc.)
    "logprobs_mode",  # "raw" (before temperature/top-p) or "processed" (after)
)

# Reasoning spans as (open, close) marker strings; a pair is used only when its first piece
# is a single token of the model's vocabulary, so models without such markers get all False.
DEFAULT_REASONING_MARKERS = (
    ("<think>", "</think>"),
    ("<|channel|>analysis<|message|>", "<|end|>"),
)


_DEFAULTS = schema_defaults("generation", "settings")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings (defaults: the config schema's); recorded verbatim in every output's
    provenance."""

    max_new_tokens: int = _DEFAULTS["max_new_tokens"]
    temperature: float = _DEFAULTS["temperature"]  # 0 means greedy
    top_p: float = _DEFAULTS["top_p"]
    top_k_logprobs: int = _DEFAULTS["top_k_logprobs"]
    logprobs_mode: str = _DEFAULTS["logprobs_mode"]  # "raw": before temperature/top-p
    seed: int = _DEFAULTS["seed"]
    batch_size: int = _DEFAULTS["batch_size"]
    max_batch_tokens: int = _DEFAULTS["max_batch_tokens"]  # prompt+generation tokens per batch
    max_model_len: int | None = _DEFAULTS["max_model_len"]  # None: the model's own
    batching: str = _DEFAULTS["batching"]  # refill | compact | static (transformers_backend)
    reasoning_markers: list | None = _DEFAULTS["reasoning_markers"]  # None: the defaults
    dtype: str = _DEFAULTS["dtype"]  # auto: bfloat16 on GPU, float32 on CPU
    device: str = _DEFAULTS["device"]
    enable_thinking: bool | None = _DEFAULTS["enable_thinking"]
    system_prompt: str | None = _DEFAULTS["system_prompt"]
    trust_remote_code: bool = _DEFAULTS["trust_remote_code"]
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.logprobs_mode not in ("raw", "processed"):
            raise ValueError(
                f"logprobs_mode must be 'raw' or 'processed', not {self.logprobs_mode!r}"
            )
        if self.batching not in ("refill", "compact", "static"):
            raise ValueError(f"batching must be refill, compact or static, not {self.batching!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> GenerationSettings:
        return GenerationSettings(**{**self.to_dict(), **changes})

    @classmethod
    def from_config(cls, config: dict) -> GenerationSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown generation settings {unknown}; known: {sorted(known)}")
        return cls(**config)


def item_seed(seed: int, item_id: str) -> int:
    """An item's own random seed: the same whichever batch, shard or run it lands in."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:8], "little") >> 1


def marker_token_ids(tokenizer, markers=None) -> list[tuple[list[int], list[int]]]:
    """Token-id sequences of the reasoning markers this tokenizer actually has."""
    vocab = tokenizer.get_vocab()
    pairs = []
    for open_text, close_text in markers or DEFAULT_REASONING_MARKERS:
        first = open_text.split(">")[0] + ">" if open_text.startswith("<") else open_text
        if first not in vocab:
            continue
        encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        pairs.append((list(encode(open_text)), list(encode(close_text))))
    return pairs


def reasoning_mask(
    token_ids: Sequence[int], markers: list, prompt_ids: Sequence[int] = ()
) -> list[bool]:
    """Per generated token: inside a reasoning span (markers included)?

    A span opened at the end of the prompt (templates that pre-fill ``<think>``) starts inside.
    """
    ids = list(prompt_ids) + list(token_ids)
    offset = len(prompt_ids)
    flags = [False] * len(ids)
    for open_ids, close_ids in markers:
        inside, start, i = False, 0, 0
        while i < len(ids):
            if not inside and ids[i : i + len(open_ids)] == open_ids:
                inside, start = True, i
                i += len(open_ids)
            elif inside and ids[i : i + len(close_ids)] == close_ids:
                end = i + len(close_ids)
                flags[start:end] = [True] * (end - start)
                inside, i = False, end
            else:
                i += 1
        if inside:
            flags[start:] = [True] * (len(ids) - start)
    return flags[offset:]


def error_row(item_id: str, error: object, prompt_tokens: int | None = None) -> dict:
    row = dict.fromkeys(GENERATION_COLUMNS)
    message = error if isinstance(error, str) else repr(error)
    row.update(
        item_id=item_id,
        prompt_tokens=prompt_tokens,
        n_tokens=0,
        finish_reason="error",
        error=message[:500],
    )
    return row


def render_chat(tokenizer, messages: list[dict], settings: GenerationSettings) -> str:
    """Apply the model's chat template (a plain transcript if it has none)."""
    if settings.system_prompt:
        messages = [{"role": "system", "content": settings.system_prompt}, *messages]
    if not tokenizer.chat_template:
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(turns) + "\nAssistant:"
    kwargs = {}
    if settings.enable_thinking is not None:
        kwargs["enable_thinking"] = settings.enable_thinking
    kwargs.update(settings.extra.get("chat_template_kwargs", {}))  # e.g. reasoning_effort
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **kwargs
    )


class Backend(Protocol):
    """One engine behind one interface; ``load_backend`` builds each one from the same
    arguments: ``(weights_dir, settings, options)``."""

    def render_prompt(self, messages: list[dict]):
        """The prompt the engine receives for these chat messages."""

    def provenance(self) -> dict:
        """Engine, versions and model revision, recorded with every output."""

    def stream(self, prompts: dict) -> Iterator[dict]:
        """Rows (``GENERATION_COLUMNS``) for ``{item_id: prompt}``, in completion order."""

    def generate(self, item_ids: Sequence[str], prompts: Sequence) -> list[dict]:
        """Rows in the order of ``item_ids``."""
