"""One table schema for every benchmark, whatever its source.

Each benchmark is normalised to a Parquet table with these columns:

- ``item_id``     stable id: the dataset's own id where it has one, else a content hash
- ``benchmark``   the benchmark's config name
- ``question``    the text posed to the model (already including options for multiple choice)
- ``reference``   the reference final answer, as text
- ``answer_type`` how the reference is compared: one of ``ANSWER_TYPES``
- ``domain``      the slice the item belongs to (subject, template family, synthetic domain)
- ``metadata``    JSON object with anything else the source had (units, options, level, ...)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import pandas as pd
import pyarrow as pa

ANSWER_TYPES = (
    "numeric",  # a number; compared with relative tolerance (units stripped)
    "integer",  # an exact integer
    "expression",  # LaTeX / symbolic math, compared by math-verify
    "boolean",  # True / False
    "list",  # a list of numbers
    "option",  # a multiple-choice letter
    "text",  # free-form; needs the LLM judge
)

COLUMNS = ("item_id", "benchmark", "question", "reference", "answer_type", "domain", "metadata")

ARROW_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("benchmark", pa.string()),
        ("question", pa.string()),
        ("reference", pa.string()),
        ("answer_type", pa.string()),
        ("domain", pa.string()),
        ("metadata", pa.string()),
    ]
)


def content_id(*parts: object, prefix: str = "") -> str:
    """A short, stable id from an item's content (used when the source has no id)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:16]
    return f"{prefix}{digest}"


def make_item(
    *,
    item_id: str,
    benchmark: str,
    question: str,
    reference: object,
    answer_type: str,
    domain: str = "",
    metadata: Mapping | None = None,
) -> dict:
    """Build one normalised row, checking the fields that every later stage relies on."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"item {item_id}: unknown answer_type {answer_type!r}")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"item {item_id}: empty question")
    if reference is None or (isinstance(reference, str) and not reference.strip()):
        raise ValueError(f"item {item_id}: empty reference answer")
    return {
        "item_id": str(item_id),
        "benchmark": benchmark,
        "question": question.strip(),
        "reference": str(reference).strip(),
        "answer_type": answer_type,
        "domain": domain or benchmark,
        "metadata": json.dumps(dict(metadata or {}), sort_keys=True, default=str),
    }


def to_frame(items: Iterable[Mapping]) -> pd.DataFrame:
    """Rows to a DataFrame in schema column order; duplicate ids are an error."""
    frame = pd.DataFrame(list(items), columns=list(COLUMNS))
    duplicated = frame["item_id"][frame["item_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"duplicate item ids, e.g. {duplicated.iloc[0]!r}")
    return frame


def validate_frame(frame: pd.DataFrame) -> None:
    """Raise if a frame does not follow the normalised schema."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"benchmark table is missing columns {missing}")
    bad_types = sorted(set(frame["answer_type"]) - set(ANSWER_TYPES))
    if bad_types:
        raise ValueError(f"benchmark table has unknown answer types {bad_types}")
