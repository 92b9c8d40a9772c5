"""Rule-based grading: final-answer extraction and comparison by answer type."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import pandas as pd

GRADER_NAME = "rules"
GRADER_VERSION = "0.1"

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\$?(" + _NUMBER + ")", re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)


@dataclass(frozen=True)
class Grade:
    """The verdict on one response. ``correct`` is None when no verdict could be reached."""

    correct: bool | None
    extracted: str | None
    reason: str


def _to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def extract_number(response: str) -> tuple[str | None, str]:
    """The final numeric answer of a response and how it was found."""
    for pattern, how in ((_BOXED, "boxed"), (_HASHES, "####"), (_ANSWER_IS, "answer is")):
        matches = pattern.findall(response)
        if matches:
            numbers = _ANY_NUMBER.findall(matches[-1])
            if numbers:
                return numbers[-1], how
    numbers = _ANY_NUMBER.findall(response)
    if numbers:
        return numbers[-1], "last number"
    return None, "no number"


def grade(response: str | None, reference: str, answer_type: str) -> Grade:
    """Grade one response against its reference answer."""
    if response is None or not response.strip():
        return Grade(False, None, "empty response")
    if answer_type not in ("integer", "numeric"):
        return Grade(None, None, f"answer type {answer_type!r} needs another grader")
    extracted, how = extract_number(response)
    expected = _to_number(reference)
    if expected is None:
        return Grade(None, extracted, f"reference {reference!r} is not a number")
    if extracted is None:
        return Grade(False, None, how)
    value = _to_number(extracted)
    if value is None:
        return Grade(False, extracted, f"{how}: not a number")
    if answer_type == "integer":
        correct = value == expected
    else:
        correct = abs(value - expected) <= 1e-4 * max(1.0, abs(expected))
    return Grade(correct, extracted, f"{how}: {'match' if correct else 'mismatch'}")


def grade_table(generations: pd.DataFrame, benchmark: pd.DataFrame) -> pd.DataFrame:
    """One grade row per generation row, keyed by ``item_id``."""
    references = benchmark.set_index("item_id")[["reference", "answer_type"]]
    rows = []
    for item_id, response in zip(generations["item_id"], generations["response"], strict=True):
        ref = references.loc[item_id]
        verdict = grade(response, ref["reference"], ref["answer_type"])
        rows.append({"item_id": item_id, **asdict(verdict)})
    grades = pd.DataFrame(rows, columns=["item_id", "correct", "extracted", "reason"])
    grades["grader"] = GRADER_NAME
    grades["grader_version"] = GRADER_VERSION
    return grades
