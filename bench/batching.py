"""Batching: throughput by batch size, and what finished rows cost under each policy.

1. Tokens/s at batch sizes 1..``--max-batch`` ÷ tokens/s at batch size 1 (the baseline,
   measured in the same run); every row decodes ``--tokens`` tokens (EOS ignored).
2. A mix of short and long answers (per-item budgets, EOS ignored, so lengths are fixed)
   decoded with ``static`` (finished rows ride along), ``compact`` (finished rows dropped from
   batch and cache) and ``refill`` (dropped, and waiting prompts admitted): useful tokens ÷
   computed row-steps, and tokens/s ÷ static's.

Usage: ``python bench/batching.py [--model DIR]`` (default: build a tiny Llama).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_overhead import QUESTIONS, clock, load, machine, model_dir, sync  # noqa: E402

from entropy_sentinel.generate.backends.transformers_backend import Decoder, Request  # noqa: E402


def requests(backend, n: int, limits: list[int]) -> list[Request]:
    out = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)] + " Explain." * (i % 3)
        text = backend.render_prompt([{"role": "user", "content": question}])
        ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(Request(f"r{i:03d}", ids, i, limits[i]))
    return sorted(out, key=lambda r: (len(r.ids), r.item_id))


def decode(backend, reqs, rows: int, policy: str) -> tuple[int, int, float]:
    now = clock(str(backend.device))[1]
    settings = backend.settings.replace(batching=policy, batch_size=rows)
    decoder = Decoder(backend.model, [], settings, rows, settings.max_batch_tokens)
    start = now()
    useful = sum(len(r["tokens"]) for r in decoder.run(reqs))
    sync(backend.device)
    return useful, decoder.computed_tokens, now() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: build a tiny Llama)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=8, help="part 1: tokens per row")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--mix", default="4,20", help="part 2: short,long budgets")
    parser.add_argument("--mix-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="part 1 repeats")
    parser.add_argument("--mix-repeats", type=int, default=2, help="part 2 repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    short, long = map(int, args.mix.split(","))
    backend = load(model_dir(args.model), args.device, args.max_batch, max(args.tokens, long))
    print(f"machine: {machine()}\nmodel: {args.model or 'tiny-llama (built)'}")
    print(f"rates per second of {clock(args.device)[0]}")

    fixed = requests(backend, args.prompts, [args.tokens] * args.prompts)
    decode(backend, fixed[:2], 2, "static")  # warm-up
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= args.max_batch]
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(args.repeats):
        for b in sizes:
            useful, _, seconds = decode(backend, fixed, b, "static")
            rates[b].append(useful / seconds)
    rate = {b: statistics.median(r) for b, r in rates.items()}
    best = max(rate, key=rate.get)
    print(f"1. {args.prompts} prompts x {args.tokens} tokens, static batches")
    for b in sizes:
        print(f"   batch {b:3d}: {rate[b]:9.1f} tokens/s  ({rate[b] / rate[1]:.2f}x batch 1)")
    print(f"   best batch {best}: {rate[best] / rate[1]:.2f}x batch 1")

    rng = random.Random(0)
    limits = [rng.choice([short, long]) for _ in range(args.prompts)]
    mixed = requests(backend, args.prompts, limits)
    names = ("static", "compact", "refill")
    runs: dict[str, list] = {policy: [] for policy in names}
    for _ in range(args.mix_repeats):  # interleaved, so load from elsewhere hits all alike
        for policy in names:
            runs[policy].append(decode(backend, mixed, args.mix_batch, policy))
    policies: dict[str, dict] = {}
    for policy in names:
        useful, computed = runs[policy][0][0], runs[policy][0][1]
        seconds = statistics.median(r[2] for r in runs[policy])
        policies[policy] = {
            "useful": useful,
            "computed": computed,
            "efficiency": useful / computed,
            "tokens_per_s": useful / seconds,
        }
    print(f"2. {short}- and {long}-token answers, {args.prompts} prompts, batch {args.mix_batch}")
    for policy, p in policies.items():
        print(
            f"   {policy:8s} useful/computed = {p['useful']}/{p['computed']} = "
            f"{p['efficiency']:.2f}; {p['tokens_per_s']:8.1f} tokens/s "
            f"({p['tokens_per_s'] / policies['static']['tokens_per_s']:.2f}x static)"
        )
    result = {
        "machine": machine(),
        "model": args.model or "tiny-llama (built)",
        "tokens_per_s_by_batch": rate,
        "best_batch": best,
        "ratio_best_vs_batch1": rate[best] / rate[1],
        "policies": policies,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
