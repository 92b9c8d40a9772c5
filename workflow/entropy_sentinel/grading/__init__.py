"""Grading: decide whether each response is correct, as a table separate from the generations.

``grade(response, reference, answer_type, *, metadata=None)`` is the one entry point for
rule-based grading; ``grade_table`` applies it to a generation table joined with its
benchmark. ``judge`` holds the optional LLM judge with the original's prompt.
"""

from __future__ import annotations

from entropy_sentinel.grading.extract import extract_answer
from entropy_sentinel.grading.rules import (
    GRADER_NAME,
    GRADER_VERSION,
    TIME_LIMIT,
    Grade,
    grade,
    grade_table,
)
from entropy_sentinel.grading.selfcheck import self_consistency

__all__ = [
    "GRADER_NAME",
    "GRADER_VERSION",
    "TIME_LIMIT",
    "Grade",
    "extract_answer",
    "grade",
    "grade_table",
    "self_consistency",
]
