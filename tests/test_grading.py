"""Rule grader: unit cases per answer type, and self-consistency on every local benchmark."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from entropy_sentinel.data import load_benchmark
from entropy_sentinel.grading import GRADER_VERSION, grade, grade_table, self_consistency
from entropy_sentinel.grading.extract import extract_answer, last_boxed
from entropy_sentinel.grading.safety import unsafe_reason

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


@pytest.mark.parametrize(
    ("response", "reference", "answer_type", "expected"),
    [
        ("so the answer is \\boxed{18}", "18", "integer", True),
        ("#### 70,000", "70000", "integer", True),
        ("The answer is $1,000.", "1000", "integer", True),
        ("\\boxed{19}", "18", "integer", False),
        ("\\boxed{70001}", "70000", "integer", False),
        ("\\boxed{\\frac{1}{2}}", "0.5", "numeric", True),
        ("\\boxed{50.9 \\mathrm{atm}}", "50.7", "numeric", False),
        ("\\boxed{2\\sqrt{3}}", "3.4641016", "numeric", True),
        ("\\boxed{4.5 \\times 10^{33}}", "4.5e33", "expression", True),
        ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)", "expression", True),
        ("\\boxed{2(n-1)}", "2n-2", "expression", True),
        ("\\boxed{2(n+1)}", "2n-2", "expression", False),
        ("\\boxed{[1/2, 8]}", "[\\frac{1}{2}, 8]", "expression", True),
        ("\\boxed{[1/2, 9]}", "[\\frac{1}{2}, 8]", "expression", False),
        ("\\boxed{[0, 5]}", "[0, 5]", "list", True),
        ("\\boxed{[0, 6]}", "[0, 5]", "list", False),
        ("\\boxed{(31250, 62000, 1.98)}", "(31250, 62000, 1.98)", "list", True),
        ("The answer is (c).", "C", "option", True),
        ("I pick \\boxed{\\text{(B)}}", "C", "option", False),
        ("\\boxed{True}", "True", "boolean", True),
        ("So no, the statement is false.", "True", "boolean", False),
        ("\\boxed{10^-4 eV}", "10^-4 eV", "text", True),
    ],
)
def test_grade_cases(response, reference, answer_type, expected):
    assert grade(response, reference, answer_type).correct is expected


def test_tolerance_comes_from_metadata():
    assert grade("\\boxed{51.5}", "50.7", "numeric", metadata={"rel_tol": 0.05}).correct
    assert not grade("\\boxed{51.5}", "50.7", "numeric").correct
    assert grade("\\boxed{51.5}", "50.7", "numeric", metadata='{"rel_tol": 0.05}').correct


def test_free_text_without_match_has_no_verdict():
    verdict = grade("\\boxed{a proton}", "an electron", "text")
    assert verdict.correct is None and "judge" in verdict.reason


def test_empty_and_special_tokens():
    assert grade("", "1", "integer").correct is False
    assert grade(None, "1", "integer").correct is False
    assert grade("\\boxed{7}<|endoftext|>", "7", "integer").correct is True


@pytest.mark.parametrize(
    "bomb",
    ["10^{10^{10^{10}}}", "9**9**9", "2^{100000}", "100000!", "((10^{9})^{9})^{9}", "{" * 500],
)
def test_bombs_are_refused_quickly(bomb):
    grade("\\boxed{1}", "1", "expression")  # warm-up outside the timing
    start = time.perf_counter()
    verdict = grade(f"so \\boxed{{{bomb}}}", "3", "expression")
    assert time.perf_counter() - start < 1.0
    assert verdict.correct is not True
    assert bomb == "{" * 500 or unsafe_reason(bomb)


def test_extraction_priority():
    assert extract_answer("x = 3. \\boxed{4}. The answer is 5")[0] == "4"
    assert extract_answer("#### 12\nThe answer is 5")[0] == "12"
    assert extract_answer("so the answer is 5.")[0] == "5"
    assert extract_answer("we get 3 then 7")[0] == "7"
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\boxed{") == "\\frac{1}{2}"


def test_grade_table_keeps_api():
    benchmark = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "reference": ["3", "x+1"],
            "answer_type": ["integer", "expression"],
            "metadata": ["{}", "{}"],
        }
    )
    generations = pd.DataFrame(
        {"item_id": ["a", "b", "zz"], "response": ["3", "\\boxed{1+x}", "1"]}
    )
    grades = grade_table(generations, benchmark)
    assert list(grades.columns) == [
        "item_id",
        "correct",
        "extracted",
        "reason",
        "grader",
        "grader_version",
        "truncated",
    ]
    assert list(grades["correct"]) == [True, True, None]
    assert set(grades["grader_version"]) == {GRADER_VERSION}


# name, folder, extra settings, items sampled (expression-heavy sets are slower to verify)
BENCHMARKS = [
    ("gsm8k", "gsm8k", {}, 300),
    ("svamp", "svamp", {}, 300),
    ("math", "math", {}, 200),
    ("math500", "math500", {}, 200),
    ("gsm_symbolic", "gsm_symbolic", {"variant": "p2"}, 300),
    ("theoremqa", "theoremqa", {}, 300),
    ("olympiadbench", "olympiadbench", {}, 150),
    ("scibench", "scibench", {}, 300),
    ("matscibench", "matscibench", {}, 120),
    ("gpqa", "gpqa", {"gpqa_mode": "open"}, 300),
    ("gpqa", "gpqa", {"gpqa_mode": "mcq"}, 300),
    ("aime24", "aime24", {}, 300),
    ("amc23", "amc23", {}, 300),
    ("minerva_math", "minerva_math", {}, 80),
]


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "folder", "extra", "limit"),
    BENCHMARKS,
    ids=[f"{b[0]}-{b[2].get('gpqa_mode', '')}".rstrip("-") for b in BENCHMARKS],
)
def test_reference_answers_grade_correct(name, folder, extra, limit):
    if not (SHARED / folder).exists():
        pytest.skip(f"{SHARED / folder} is absent")
    frame = load_benchmark(name, {"path": str(SHARED / folder), "limit": limit, "seed": 0, **extra})
    result = self_consistency(frame)
    assert result["self_consistency"] >= 0.99, result["failures"][:5]
    assert result["wrong_rejected"] >= 0.95, result


def test_a_generation_error_gets_no_verdict():
    """A prompt longer than the context is not a wrong answer: correct stays null."""
    benchmark = pd.DataFrame({"item_id": ["a", "b"], "reference": ["3", "3"]})
    benchmark["answer_type"] = "integer"
    generations = pd.DataFrame(
        {
            "item_id": ["a", "b"],
            "response": [None, "The answer is 4."],
            "error": ["prompt of 9000 tokens exceeds the context of 8192", None],
        }
    )
    grades = grade_table(generations, benchmark)
    assert list(grades["correct"]) == [None, False]
    assert grades["reason"].iloc[0] == (
        "no verdict: generation error: prompt of 9000 tokens exceeds the context of 8192"
    )
