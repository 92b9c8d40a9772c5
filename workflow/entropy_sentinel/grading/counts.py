"""What grading left undecided, per benchmark, for the summary: nothing is dropped unseen.

A row is *ungraded* when it has no verdict (``correct`` null: a free-text answer with no judge,
a judge that gave no verdict, a failed generation, a grader timeout); the estimator stage
drops those rows. *No final answer* counts responses judged wrong because they stated no final
answer and their last number was not used (truncated responses, expression answers).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ("model", "benchmark", "rows", "graded", "correct", "ungraded", "truncated", "no_final")


def grading_counts(grade_files: list[str | Path]) -> pd.DataFrame:
    """One row per ``results/grades/{model}/{benchmark}.parquet``: the counts of ``COLUMNS``."""
    rows = []
    for path in map(Path, grade_files):
        grades = pd.read_parquet(path)
        verdict = grades["correct"]
        reason = grades["reason"].astype(str)
        truncated = grades["truncated"] if "truncated" in grades else pd.Series(False, grades.index)
        rows.append(
            {
                "model": path.parent.name,
                "benchmark": path.stem,
                "rows": len(grades),
                "graded": int(verdict.notna().sum()),
                "correct": int((verdict == True).sum()),  # noqa: E712 (object column)
                "ungraded": int(verdict.isna().sum()),
                "truncated": int(truncated.fillna(False).astype(bool).sum()),
                "no_final": int(reason.str.startswith("no final answer").sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def grading_markdown(grade_files: list[str | Path]) -> str:
    """The summary's grading section: a table with the ungraded rows in plain sight."""
    counts = grading_counts(grade_files)
    lines = [
        "## Grading",
        "",
        "Ungraded rows have no verdict and are left out of every accuracy and estimate; "
        "no final answer: judged wrong, the response stated none (its last number not used).",
        "",
        "| model | benchmark | rows | graded | accuracy | ungraded | truncated | no final answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in counts.itertuples(index=False):
        accuracy = f"{r.correct / r.graded:.3f}" if r.graded else "–"
        flag = f"**{r.ungraded}**" if r.ungraded else "0"
        lines.append(
            f"| {r.model} | {r.benchmark} | {r.rows} | {r.graded} | {accuracy} | {flag} "
            f"| {r.truncated} | {r.no_final} |"
        )
    return "\n".join(lines) + "\n"
