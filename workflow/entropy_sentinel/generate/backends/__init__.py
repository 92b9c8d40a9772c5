"""Generation backends: produce responses with per-step top-k log-probabilities.

Every backend implements ``base.Backend`` and is built by ``load_backend`` from the same
arguments; its module is imported only when chosen (vLLM is an optional extra)."""

from __future__ import annotations

import importlib

from entropy_sentinel.generate.backends.base import (
    GENERATION_COLUMNS,
    Backend,
    GenerationSettings,
    error_row,
    item_seed,
    marker_token_ids,
    reasoning_mask,
    render_chat,
)

__all__ = [
    "BACKENDS",
    "GENERATION_COLUMNS",
    "Backend",
    "GenerationSettings",
    "error_row",
    "item_seed",
    "load_backend",
    "marker_token_ids",
    "reasoning_mask",
    "render_chat",
]

# name -> "module:class"; every class takes (weights_dir, settings, options)
BACKENDS = {
    "transformers": "entropy_sentinel.generate.backends.transformers_backend:TransformersBackend",
    "vllm": "entropy_sentinel.generate.backends.vllm_backend:VLLMBackend",
    "openai": "entropy_sentinel.generate.backends.openai_backend:OpenAIBackend",
}


def load_backend(
    name: str,
    weights_dir: str | None,
    settings: GenerationSettings,
    threads: int = 0,
    options: dict | None = None,
) -> Backend:
    """Build a backend by name. ``options``: the backend's own settings (openai:
    ``generation.openai``; vllm: engine arguments for this model); ``threads``: torch's CPU
    threads for the transformers backend (0: torch's default)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    if threads and name == "transformers":
        import torch

        torch.set_num_threads(threads)
    return getattr(importlib.import_module(module), cls)(weights_dir, settings, options or {})
