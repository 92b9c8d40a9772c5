"""What small real models write: hedged numbers, units in prose, tuples in prose; no verdict
from a number met in passing; a grading time guard that counts CPU time, not machine load."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from entropy_sentinel.grading import grade, grade_table
from entropy_sentinel.grading.counts import grading_counts, grading_markdown
from entropy_sentinel.grading.safety import GradingTimeout, deadline


@pytest.mark.parametrize(
    ("response", "reference", "answer_type", "expected"),
    [
        ("The answer is approximately 2.71.", "2.718", "numeric", True),
        ("The answer is approximately 2.91.", "2.718", "numeric", False),
        ("So the final answer is about 12 apples.", "12", "integer", True),
        ("The answer is ≈ 0.33", "1/3", "numeric", True),
        ("The answer is $\\approx 4.5 \\times 10^{3}$ J", "4500", "numeric", True),
        ("The answer is ~7 hours.", "7", "integer", True),
        ("The answer is roughly 50.7 atm at this temperature", "50.7", "numeric", True),
        ("Therefore the final answer is 3.5kg.", "3.5", "numeric", True),
        ("So the speed is 20 m/s.", "20", "numeric", True),
        ("Thus the three values are 4, 9 and 0.5.", "[4, 9, 0.5]", "list", True),
        ("Thus the three values are 4, 9 and 0.6.", "[4, 9, 0.5]", "list", False),
        ("The roots are x = 1,000 and 2.", "(1000, 2)", "list", True),
    ],
)
def test_what_small_models_write(response, reference, answer_type, expected):
    verdict = grade(response, reference, answer_type, metadata={"rel_tol": 0.01})
    assert verdict.correct is expected, verdict


def test_no_last_number_for_expressions():
    # a derivation that never states its result: its last number is not the answer
    verdict = grade("We simplify 3 \\cdot 4 and then 2 + 4", "4", "expression")
    assert verdict.correct is False and verdict.reason.startswith("no final answer")
    assert grade("so we get \\boxed{4}", "4", "expression").correct is True


def test_no_last_number_for_truncated_responses():
    loop = "Next, 3 \\cdot 4 = 12. " * 40 + "Next, 3 \\cdot 4"  # cut off in a repetition loop
    assert grade(loop, "4", "integer").correct is True  # what the old fallback did
    verdict = grade(loop, "4", "integer", truncated=True)
    assert verdict.correct is False and "truncated" in verdict.reason
    # a truncated response that did state its answer keeps it
    assert grade("The answer is 4. Check: 3 \\cdot 4", "4", "integer", truncated=True).correct


def test_no_stray_option_letter_for_truncated_responses():
    cut = "Option A is wrong because B describes a lattice, so let us compare C and"
    assert grade(cut, "C", "option").correct is True  # the last-letter heuristic
    verdict = grade(cut, "C", "option", truncated=True)
    assert verdict.correct is False and verdict.reason.startswith("no final answer")
    assert grade("The answer is (C). Because", "C", "option", truncated=True).correct is True


def test_grade_table_reads_truncation_and_counts_it():
    generations = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "response": ["... 3 \\cdot 4", "The answer is 4.", "a proton", None],
            "finish_reason": ["length", "stop", "stop", "error"],
            "error": [None, None, None, "context too long"],
        }
    )
    benchmark = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "reference": ["4", "4", "an electron", "1"],
            "answer_type": ["integer", "integer", "text", "integer"],
        }
    )
    grades = grade_table(generations, benchmark)
    assert list(grades["correct"]) == [False, True, None, None]
    assert list(grades["truncated"]) == [True, False, False, False]


def test_summary_counts_ungraded_rows(tmp_path):
    path = tmp_path / "results" / "grades" / "m" / "gpqa.parquet"
    path.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "item_id": list("abcd"),
            "correct": pd.Series([True, None, False, None], dtype=object),
            "reason": [
                "boxed: match",
                "free-text answer: needs the LLM judge",
                "no final answer (truncated response; the last number is not used)",
                "timeout",
            ],
            "truncated": [False, False, True, False],
        }
    ).to_parquet(path)
    (row,) = grading_counts([path]).to_dict(orient="records")
    assert row == {
        "model": "m",
        "benchmark": "gpqa",
        "rows": 4,
        "graded": 2,
        "correct": 1,
        "ungraded": 2,
        "truncated": 1,
        "no_final": 1,
    }
    assert "| m | gpqa | 4 | 2 | 0.500 | **2** | 1 | 1 |" in grading_markdown([path])


def test_time_guard_counts_cpu_time_not_waiting():
    with deadline(0.2):
        time.sleep(0.5)  # waiting (for a core, or here for the clock) uses no CPU time
    started = time.process_time()
    with pytest.raises(GradingTimeout), deadline(0.2):
        while True:
            sum(range(1000))
    assert time.process_time() - started >= 0.19


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_verdicts_do_not_depend_on_load():
    """Grade while busy processes compete for this process's core: the same verdicts."""
    import multiprocessing

    responses = [
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\sin(\\pi/3)", "expression"),
        ("\\boxed{(1, \\frac{\\pi}{4})}", "\\left(1, \\frac{\\pi}{4}\\right)", "expression"),
        ("\\boxed{x^2 + 2x + 1}", "(x+1)^2", "expression"),
    ]
    quiet = [grade(*r) for r in responses]
    core = {min(os.sched_getaffinity(0))}
    previous = os.sched_getaffinity(0)
    hogs = [multiprocessing.Process(target=_spin, args=(core,), daemon=True) for _ in range(6)]
    for hog in hogs:
        hog.start()
    try:
        os.sched_setaffinity(0, core)
        busy = [grade(*r) for r in responses]
    finally:
        os.sched_setaffinity(0, previous)
        for hog in hogs:
            hog.terminate()
    assert [v.correct for v in busy] == [v.correct for v in quiet] == [True, True, True]


def _spin(core):
    os.sched_setaffinity(0, core)
    while True:
        pass
