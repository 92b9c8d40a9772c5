"""Grader self-checks: write each reference (and a wrong answer) the way a model would.

A trustworthy grader marks a benchmark's own reference answers correct and obviously
wrong answers wrong. ``self_consistency`` measures both on a benchmark table.
"""

from __future__ import annotations

import json
import time
import zlib

import pandas as pd

from entropy_sentinel.grading.rules import Grade, _normalise_text, _split_items, grade, to_number

_STYLES = (
    "Let me work through this step by step.\n...\nSo the final answer is $\\boxed{{{answer}}}$.",
    "We compute the result carefully.\nThe answer is {answer}.",
    "Step 1: read the problem.\nStep 2: solve it.\n#### {answer}",
)


def _style(item_id: str, answer_type: str) -> str:
    if answer_type in ("expression", "list", "text"):
        return _STYLES[0]  # a LaTeX answer is only unambiguous when boxed
    return _STYLES[zlib.crc32(item_id.encode()) % len(_STYLES)]


def render_correct(item_id: str, reference: str, answer_type: str) -> str:
    """A response whose final answer is the reference itself."""
    if answer_type == "option":
        return f"Comparing the options, the answer is ({reference})."
    if answer_type == "boolean":
        return f"Checking the claim... so the answer is \\boxed{{{reference}}}."
    return _style(item_id, answer_type).format(answer=reference)


def _shift(value: float, answer_type: str) -> float:
    if answer_type == "integer":
        return value + 1
    return value + max(1.0, 0.2 * abs(value))  # beyond any benchmark's relative tolerance


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def wrong_answer(reference: str, answer_type: str, other_reference: str | None = None) -> str:
    """An obviously wrong final answer: reference + 1 for integers, beyond tolerance for other
    numbers, another option letter, the negated boolean, else another item's reference."""
    if answer_type == "option":
        letter = reference.strip("() ").upper()[:1] or "A"
        return "B" if letter == "A" else "A"
    if answer_type == "boolean":
        return "False" if reference.strip().lower() in ("true", "yes") else "True"
    value = to_number(reference)
    if value is not None and answer_type in ("integer", "numeric", "expression", "text"):
        return _format(_shift(value, answer_type))
    if answer_type == "list":
        parts = [to_number(p) for p in _split_items(reference)]
        if parts and all(p is not None for p in parts):
            parts[0] = _shift(parts[0], "numeric")
            return "(" + ", ".join(_format(p) for p in parts) + ")"
    return other_reference if other_reference is not None else f"{reference} + 1"


def render_wrong(item_id: str, reference: str, answer_type: str, other: str | None = None) -> str:
    """A response whose final answer is ``wrong_answer(...)``."""
    answer = wrong_answer(reference, answer_type, other)
    if answer_type == "option":
        return f"Comparing the options, the answer is ({answer})."
    return render_correct(item_id, answer, "expression" if answer_type == "list" else answer_type)


def self_consistency(frame: pd.DataFrame) -> dict:
    """Rates on one benchmark table: references marked correct, wrong answers marked wrong."""
    references = list(frame["reference"])
    keys = [_normalise_text(r) for r in references]
    correct_hits = wrong_rejected = wrong_false = timeouts = 0
    failures: list[tuple[str, str, Grade]] = []
    start = time.perf_counter()
    for index, row in enumerate(frame.itertuples(index=False)):
        meta = json.loads(row.metadata) if isinstance(row.metadata, str) else {}
        verdict = grade(
            render_correct(row.item_id, row.reference, row.answer_type),
            row.reference,
            row.answer_type,
            metadata=meta,
        )
        correct_hits += verdict.correct is True
        timeouts += verdict.reason == "timeout"
        if verdict.correct is not True and len(failures) < 20:
            failures.append((row.item_id, row.reference, verdict))
        other = next(
            (
                references[j % len(references)]
                for j in range(index + 1, index + len(references))
                if keys[j % len(references)] != keys[index]
            ),
            None,
        )
        wrong = grade(
            render_wrong(row.item_id, row.reference, row.answer_type, other),
            row.reference,
            row.answer_type,
            metadata=meta,
        )
        wrong_rejected += wrong.correct is not True
        wrong_false += wrong.correct is False
        timeouts += wrong.reason == "timeout"
    n = max(len(frame), 1)
    return {
        "n": len(frame),
        "self_consistency": correct_hits / n,
        "wrong_rejected": wrong_rejected / n,
        "wrong_marked_false": wrong_false / n,
        "timeouts": timeouts,
        "seconds": time.perf_counter() - start,
        "failures": failures,
    }
