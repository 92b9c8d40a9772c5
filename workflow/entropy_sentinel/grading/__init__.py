"""Grading: decide whether each response is correct, as a table separate from the generations.

``grade(response, reference, answer_type)`` is the one entry point for rule-based grading;
``grade_table`` applies it to a generation table joined with its benchmark.
"""

from __future__ import annotations

from .rules import GRADER_NAME, GRADER_VERSION, Grade, grade, grade_table

__all__ = ["GRADER_NAME", "GRADER_VERSION", "Grade", "grade", "grade_table"]
