"""Peak memory of decoding with top-k capture ÷ plain ``model.generate`` (no scores).

Each variant runs in a fresh process (peak RSS is per process and never goes down):
on CPU the peak RSS (``resource.getrusage``), on GPU ``torch.cuda.max_memory_allocated``.
Both variants decode ``--new-tokens`` tokens for ``--batch`` rows, EOS ignored. Reported:
peak ÷ peak, and the growth during generation (peak − after loading) ÷ the same for the
baseline. Usage: ``python bench/capture_memory.py [--model DIR] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_overhead import encode, load, machine, model_dir, run_capture, run_generate  # noqa: E402


def child(args) -> None:
    torch.set_num_threads(args.threads)
    backend = load(args.model, args.device, args.batch, args.new_tokens)
    ids, enc = encode(backend, args.batch)
    cuda = backend.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded_cuda = torch.cuda.memory_allocated() if cuda else 0
    if args.child == "generate":
        tokens = run_generate(backend, enc, args.new_tokens)
    else:
        tokens = run_capture(backend, ids, args.new_tokens)
    out = {
        "tokens": tokens,
        "loaded": loaded_cuda if cuda else loaded_kb * 1024,
        "peak": torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "unit": "cuda bytes allocated" if cuda else "RSS bytes",
    }
    print("RESULT " + json.dumps(out))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: build a tiny Llama)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    parser.add_argument("--child", choices=["generate", "capture"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    path = model_dir(args.model)
    results = {}
    for variant in ("generate", "capture"):
        command = [sys.executable, __file__, "--child", variant, "--model", path]
        command += ["--device", args.device, "--batch", str(args.batch)]
        command += ["--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        results[variant] = json.loads(line[len("RESULT ") :])
    base, cap = results["generate"], results["capture"]
    result = {
        "model": args.model or "tiny-llama (built)",
        "machine": machine(),
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "variants": results,
        "ratio_peak": cap["peak"] / base["peak"],
        "ratio_growth": (cap["peak"] - cap["loaded"]) / max(1, base["peak"] - base["loaded"]),
    }
    mib = 1 << 20
    print(f"machine: {result['machine']}\nmodel: {result['model']}")
    print(f"batch {args.batch}, {args.new_tokens} new tokens; {base['unit']}")
    for name, r in results.items():
        print(
            f"  {name:9s} loaded {r['loaded'] / mib:8.1f} MiB  peak {r['peak'] / mib:8.1f} MiB"
            f"  ({r['tokens']} tokens)"
        )
    print(f"peak   capture / generate = {result['ratio_peak']:.3f}  (target <= 1.10)")
    print(f"growth capture / generate = {result['ratio_growth']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
