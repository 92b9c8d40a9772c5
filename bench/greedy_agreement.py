"""The llama-server backend against the transformers backend on the same GGUF, greedy.

    .venv/bin/python bench/greedy_agreement.py [--per-domain 10] [--tokens 20]

SmolLM2-135M-Instruct (the demo's Q4_1 GGUF) is served by llama-server (quantised kernels) and
run by the transformers backend (the same file dequantised to float32). Both get the same
prompt text: the chat template is rendered here and sent to the server's completions endpoint.
Reported: the share of items whose first ``--tokens`` generated tokens agree; over the tokens
both generated from the same context (the common prefix), the Pearson correlation of the
per-token top-20 entropy and of the sampled-token log-prob, and their mean absolute difference.
Quantisation makes them differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from llama_server.server import CACHE, SERVED_NAME, LlamaServer, missing_reason, smollm2_gguf  # noqa: E402

from entropy_sentinel.data.prompts import build_messages  # noqa: E402
from entropy_sentinel.data.synthetic import generate_items  # noqa: E402
from entropy_sentinel.features.entropy import entropy_profile  # noqa: E402
from entropy_sentinel.generate.backends import GenerationSettings, load_backend  # noqa: E402


def transformers_weights(gguf: Path) -> Path:
    """The GGUF dequantised to safetensors once, as the workflow's model fetch does."""
    from entropy_sentinel.generate.models import _convert_gguf

    weights = CACHE / "models" / "smollm2-135m-hf"
    if not (weights / "config.json").exists():
        _convert_gguf(gguf, weights)
    return weights


def compare(server_rows: dict, hf_rows: dict, n_tokens: int) -> dict:
    agree, entropies, logprobs, prompt_match = [], ([], []), ([], []), []
    for item_id, hf in hf_rows.items():
        served = server_rows[item_id]
        a, b = list(served["token_ids"])[:n_tokens], list(hf["token_ids"])[:n_tokens]
        agree.append(a == b)
        prompt_match.append(served["prompt_tokens"] == hf["prompt_tokens"])
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        common = min(len(a), len(b)) if common is None else common + 1  # the first differing
        # token still came from the same context; everything after it did not
        for side, row in enumerate((served, hf)):
            topk = np.stack(row["topk_logprobs"][:common])
            entropies[side].append(entropy_profile(topk, "topk"))
            logprobs[side].append(np.asarray(row["sampled_logprobs"][:common]))
    h_server, h_hf = map(np.concatenate, entropies)
    lp_server, lp_hf = map(np.concatenate, logprobs)
    return {
        "items": len(agree),
        "first_tokens": n_tokens,
        "share_first_tokens_agree": round(float(np.mean(agree)), 3),
        "same_prompt_token_count": round(float(np.mean(prompt_match)), 3),
        "tokens_compared": int(h_server.size),
        "top20_entropy_pearson": round(float(np.corrcoef(h_server, h_hf)[0, 1]), 4),
        "top20_entropy_mean_abs_diff_nats": round(float(np.abs(h_server - h_hf).mean()), 4),
        "top20_entropy_mean_nats": {
            "llama_server": round(float(h_server.mean()), 4),
            "transformers": round(float(h_hf.mean()), 4),
        },
        "sampled_logprob_pearson": round(float(np.corrcoef(lp_server, lp_hf)[0, 1]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    if reason := missing_reason():
        sys.exit(reason)
    gguf = smollm2_gguf()
    weights = transformers_weights(gguf)
    items = pd.DataFrame(generate_items(args.per_domain, seed=11))
    settings = GenerationSettings(
        max_new_tokens=args.tokens, temperature=0.0, top_k_logprobs=20, batch_size=16
    )
    hf = load_backend("transformers", str(weights), settings, threads=2)
    prompts = {r.item_id: hf.render_prompt(build_messages(r.question)) for r in items.itertuples()}
    hf_rows = {row["item_id"]: row for row in hf.stream(prompts)}
    del hf
    with LlamaServer(gguf) as server:
        options = {
            "base_url": server.base_url,
            "model": SERVED_NAME,
            "api_key_env": None,
            "endpoint": "completions",  # the prompt text rendered above, byte for byte
            "concurrency": 1,  # batched requests shift log-probs a little; keep them apart
            "extra_body": {"cache_prompt": False},
        }
        served = load_backend("openai", str(weights), settings, options=options)
        server_rows = {row["item_id"]: row for row in served.stream(prompts)}
    failed = [r["error"] for r in server_rows.values() if r["error"]]
    if failed:
        sys.exit(f"{len(failed)} server requests failed, e.g. {failed[0]}")
    print(json.dumps(compare(server_rows, hf_rows, args.tokens), indent=2))


if __name__ == "__main__":
    main()
