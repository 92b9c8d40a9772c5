"""Generation backends: produce responses with per-step top-k log-probabilities.

Every backend yields the same row layout (``GENERATION_COLUMNS``) so that later stages do not
care which engine produced a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    "finish_reason",  # "stop" (EOS reached) or "length" (max_new_tokens hit)
    "error",  # null, or why this item produced no output
)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; recorded verbatim in every output's provenance."""

    max_new_tokens: int = 512
    temperature: float = 0.5  # 0 means greedy
    top_p: float = 1.0
    top_k_logprobs: int = 20
    logprobs_mode: str = "raw"  # "raw": before temperature/top-p; "processed": after
    seed: int = 42
    batch_size: int = 16
    max_batch_tokens: int = 16384  # prompt+generation token budget per batch
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    device: str = "auto"
    enable_thinking: bool | None = None  # passed to chat templates that support it
    system_prompt: str | None = None
    trust_remote_code: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> GenerationSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown generation settings {unknown}; known: {sorted(known)}")
        return cls(**config)


BACKENDS = ("transformers", "vllm")


def load_backend(name: str, weights_dir: str, settings: GenerationSettings, threads: int = 0):
    """Instantiate a backend by name (imports are lazy: vLLM is an optional extra)."""
    if name == "transformers":
        import torch

        from .transformers_backend import TransformersBackend

        if threads:
            torch.set_num_threads(threads)
        return TransformersBackend(weights_dir, settings)
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(weights_dir, settings)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
