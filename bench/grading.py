"""Grading benchmark: throughput on real files, and per-benchmark self-consistency.

Run: ``.venv/bin/python bench/grading.py [--limit N]``. Throughput is reported against a
baseline measured in the same run on the same items: plain string equality between the
last ``\\boxed{}`` and the reference (fast, and wrong whenever the notation differs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from entropy_sentinel.data import load_benchmark
from entropy_sentinel.grading import grade, self_consistency
from entropy_sentinel.grading.extract import last_boxed
from entropy_sentinel.grading.selfcheck import render_correct

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
SETS = [
    ("gsm8k", "gsm8k", {}),
    ("svamp", "svamp", {}),
    ("math", "math", {}),
    ("math500", "math500", {}),
    ("gsm_symbolic", "gsm_symbolic", {"variant": "p2"}),
    ("theoremqa", "theoremqa", {}),
    ("olympiadbench", "olympiadbench", {}),
    ("scibench", "scibench", {}),
    ("matscibench", "matscibench", {}),
    ("gpqa", "gpqa", {"gpqa_mode": "open"}),
    ("gpqa", "gpqa", {"gpqa_mode": "mcq"}),
    ("aime24", "aime24", {}),
    ("amc23", "amc23", {}),
    ("minerva_math", "minerva_math", {}),
]


def throughput(name: str, folder: str) -> None:
    frame = load_benchmark(name, {"path": str(SHARED / folder)})
    responses = [render_correct(r.item_id, r.reference, r.answer_type) for r in frame.itertuples()]
    grade(responses[0], frame["reference"].iloc[0], frame["answer_type"].iloc[0])  # warm-up
    start = time.perf_counter()
    for response, row in zip(responses, frame.itertuples(), strict=True):
        grade(response, row.reference, row.answer_type, metadata=row.metadata)
    rules = len(frame) / (time.perf_counter() - start)
    start = time.perf_counter()
    hits = sum(
        (last_boxed(response) or "").strip() == row.reference.strip()
        for response, row in zip(responses, frame.itertuples(), strict=True)
    )
    baseline = len(frame) / (time.perf_counter() - start)
    print(
        f"{name:10s} n={len(frame):5d}  rules {rules:9.1f} items/s  "
        f"string-equality baseline {baseline:11.1f} items/s  "
        f"ratio rules/baseline {rules / baseline:.4f}  (baseline agreement {hits / len(frame):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="items per benchmark")
    args = parser.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is absent")
    print("== throughput (reference rendered as a model answer)")
    for name in ("gsm8k", "math500"):
        throughput(name, name)
    print("\n== self-consistency (reference marked correct) and wrong-answer rejection")
    for name, folder, extra in SETS:
        settings = {"path": str(SHARED / folder), "limit": args.limit, "seed": 0, **extra}
        frame = load_benchmark(name, settings)
        result = self_consistency(frame)
        label = name + (f"-{extra['gpqa_mode']}" if "gpqa_mode" in extra else "")
        print(
            f"{label:14s} n={result['n']:5d}  self-consistency {result['self_consistency']:.4f}  "
            f"wrong rejected {result['wrong_rejected']:.4f}  "
            f"(marked false {result['wrong_marked_false']:.4f})  "
            f"timeouts {result['timeouts']}  {result['seconds']:.1f}s"
        )


if __name__ == "__main__":
    main()
