"""Synthetic traffic logs shaped like llama-server's chat completions (for tests and benches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def synthetic_response(
    rng: np.random.Generator, steps: int, k: int = 20, created: int = 0, spread=(0.5, 4.0)
):
    """One chat-completion body with ``steps`` tokens of ``k`` top log-probs each; logits with
    a smaller ``spread`` give flatter distributions, i.e. higher entropy."""
    content = []
    for _ in range(steps):
        logits = rng.normal(0.0, rng.uniform(*spread), size=k + 5)
        logp = logits - np.log(np.exp(logits).sum())
        top = np.argsort(-logp)[:k]
        chosen = int(top[0] if rng.random() < 0.8 else top[rng.integers(k)])
        content.append(
            {
                "id": chosen,
                "token": f"t{chosen}",
                "bytes": [116],
                "logprob": float(logp[chosen]),
                "top_logprobs": [
                    {"id": int(t), "token": f"t{t}", "bytes": [116], "logprob": float(logp[t])}
                    for t in top
                ],
            }
        )
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": created,
        "model": "smollm2-135m",
        "system_fingerprint": "b0-test",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "text"},
                "logprobs": {"content": content},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": steps},
    }


def write_log(
    path: Path,
    n: int,
    *,
    seed: int = 0,
    k: int = 20,
    steps: tuple[int, int] = (3, 12),
    slices=("a", "b", "c"),
    start: int = 1_767_225_600,  # 2026-01-01 00:00 UTC
    spacing_s: float = 60.0,
    spread=(0.5, 4.0),
    mode: str = "w",
) -> Path:
    """``n`` log records ``{"time", "tenant", "response"}``, one per line."""
    rng = np.random.default_rng(seed)
    with open(path, mode) as out:
        for i in range(n):
            t = int(start + i * spacing_s)
            body = synthetic_response(rng, int(rng.integers(*steps)), k, created=t, spread=spread)
            body["id"] = f"chatcmpl-{seed}-{i}"  # as servers do: one id per response
            record = {"time": t, "tenant": slices[i % len(slices)], "response": body}
            out.write(json.dumps(record) + "\n")
    return path
