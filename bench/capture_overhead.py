"""Tokens/s of decoding with top-k capture ÷ plain ``model.generate`` (no scores).

Every variant decodes the same prompts, batch and greedy steps, with EOS ignored so that all
rows produce exactly ``--new-tokens`` tokens (``min_new_tokens`` for ``generate``). Variants:

- ``generate``: the baseline, ``model.generate`` without scores;
- ``capture``: the backend's own decoding loop (``Decoder``, static batching);
- ``processor``: ``generate`` with a LogitsProcessor that captures the same statistics.

Repeats are interleaved and the median is reported, so load from other processes hits every
variant alike. Usage: ``python bench/capture_overhead.py [--model DIR] [--device cuda]``;
without ``--model`` a tiny random Llama is built (see tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "workflow")]

from entropy_sentinel.generate.backends import GenerationSettings  # noqa: E402
from entropy_sentinel.generate.backends.transformers_backend import (  # noqa: E402
    Decoder,
    Request,
    TransformersBackend,
    pick_device,
)

QUESTIONS = [
    "What is 3 + 4?",
    "Ava has 5 apples. Then Ava gets 2 more apples. How many apples does Ava have now?",
    "Ben gives away 3 marbles. Chloe has 9 coins. How many marbles does Ben have?",
    "The sum of 21 and 34 is 55. What is the product of 6 and 7?",
    "Let's think step by step: what is 12 - 5?",
    "A train travels 60 km in 1.5 hours. What is its average speed in km/h?",
    "Solve for x: 2x + 3 = 11.",
    "What is the derivative of x^3 + 2x?",
]


def model_dir(path: str | None) -> str:
    """The given model directory, or a freshly built tiny Llama."""
    if path:
        return path
    from conftest import build_tiny_model

    directory = Path(tempfile.mkdtemp(prefix="tiny-llama-"))
    return str(build_tiny_model(directory))


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{platform.node()} {cpu}, {device}, torch {torch.__version__}, {threads} threads"


def load(path: str, device: str, batch: int, new_tokens: int, k: int = 20) -> TransformersBackend:
    settings = GenerationSettings(
        temperature=0,
        batch_size=batch,
        max_new_tokens=new_tokens,
        top_k_logprobs=k,
        batching="static",
        device=device,
        max_batch_tokens=1 << 30,
    )
    return TransformersBackend(path, settings)


def encode(backend: TransformersBackend, batch: int) -> tuple[list[list[int]], dict]:
    texts = [
        backend.render_prompt([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
        for i in range(batch)
    ]
    ids = [backend.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    enc = backend.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return ids, enc.to(backend.device)


class CaptureProcessor:
    """LogitsProcessor that captures top-k, sampled log-probs and entropy inside ``generate``."""

    def __init__(self, batch: int, steps: int, k: int, device):
        self.k, self.step = k, 0
        self.topk_lp = torch.zeros(batch, steps, k, device=device)
        self.topk_ids = torch.zeros(batch, steps, k, dtype=torch.int32, device=device)
        self.entropy = torch.zeros(batch, steps, device=device)
        self.logp = None
        self.sampled = torch.zeros(batch, steps, device=device)

    def __call__(self, input_ids, scores):
        if self.logp is not None:  # the token chosen at the previous step is now known
            self.sampled[:, self.step - 1] = self.logp.gather(1, input_ids[:, -1:]).squeeze(1)
        logp = scores.float().log_softmax(dim=-1)
        values, indices = logp.topk(self.k, dim=-1)
        self.topk_lp[:, self.step] = values
        self.topk_ids[:, self.step] = indices.to(torch.int32)
        self.entropy[:, self.step] = -(logp.exp() * logp).nan_to_num().sum(dim=-1)
        self.logp, self.step = logp, self.step + 1
        return scores


def clock(device: str) -> tuple[str, object]:
    """CPU time of this process on a 1-thread CPU run (robust to a shared box), else wall."""
    if pick_device(device).type == "cpu" and torch.get_num_threads() == 1:
        return "process CPU time", time.process_time
    return "wall time", time.perf_counter


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def run_generate(backend, enc, new_tokens: int, processor=None) -> int:
    from transformers import LogitsProcessorList

    out = backend.model.generate(
        **enc,
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=backend.tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList([processor]) if processor else None,
    )
    sync(backend.device)
    return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]


def run_capture(backend, ids, new_tokens: int) -> int:
    s = backend.settings
    decoder = Decoder(backend.model, [], s, len(ids), s.max_batch_tokens)  # no EOS: full length
    requests = [Request(f"r{i}", x, i, new_tokens) for i, x in enumerate(ids)]
    n = sum(len(result["tokens"]) for result in decoder.run(requests))
    sync(backend.device)
    return n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: build a tiny Llama)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the box is shared)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = model_dir(args.model)
    backend = load(path, args.device, args.batch, args.new_tokens)
    ids, enc = encode(backend, args.batch)
    k = backend.settings.top_k_logprobs

    def processor_variant(n):
        return run_generate(backend, enc, n, CaptureProcessor(args.batch, n, k, backend.device))

    variants = {
        "generate": lambda n: run_generate(backend, enc, n),
        "capture": lambda n: run_capture(backend, ids, n),
        "processor": processor_variant,
    }
    for fn in variants.values():  # warm-up
        fn(4)
    clock_name, now = clock(args.device)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = now()
            tokens = fn(args.new_tokens)
            rates[name].append(tokens / (now() - start))
    median = {name: statistics.median(r) for name, r in rates.items()}
    result = {
        "model": args.model or "tiny-llama (built)",
        "machine": machine(),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "k": k,
        "clock": clock_name,
        "tokens_per_s": median,
        "ratio_capture_vs_generate": median["capture"] / median["generate"],
        "ratio_processor_vs_generate": median["processor"] / median["generate"],
    }
    print(f"machine: {result['machine']}\nmodel: {result['model']}")
    print(f"batch {args.batch}, {args.new_tokens} new tokens, top-{k}, median of {args.repeats}")
    print(f"rates per second of {clock_name}")
    for name, rate in median.items():
        print(f"  {name:10s} {rate:10.1f} tokens/s")
    print(f"capture   / generate = {result['ratio_capture_vs_generate']:.3f}  (target >= 0.95)")
    print(f"processor / generate = {result['ratio_processor_vs_generate']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
