"""Rule-based grading: extract the final answer, then compare it by the item's answer type.

Routing by ``answer_type`` (and ``metadata``: ``rel_tol``, units, the benchmark's own type):

- ``integer`` / ``numeric``: a number (units, thousands separators, LaTeX fractions and
  ``a \\times 10^{b}`` understood), exact for integers, relative tolerance for numerics;
- ``list``: an ordered tuple/list of numbers compared element by element;
- ``expression``: LaTeX / symbolic, compared by math-verify (tuples, intervals, sets too);
- ``boolean``, ``option``: normalised words and letters;
- ``text``: exact normalised match, else no verdict (the LLM judge decides).

Model output never reaches ``eval`` or a bare ``sympify``; every call runs under a CPU-time
limit (``safety.deadline``) and costly expressions are refused before parsing.

The last number of a response is used as its answer only for number-type items of a response
that finished: an expression item or a truncated response without a stated final answer
(boxed, "####", "the answer is") is wrong, reason "no final answer".
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache

import pandas as pd
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from entropy_sentinel.grading.extract import extract_answer, last_boxed
from entropy_sentinel.grading.safety import GradingTimeout, deadline, unsafe_reason

GRADER_NAME = "rules"
GRADER_VERSION = "1.1"
TIME_LIMIT = 0.6  # seconds per grade() call; leaves margin under the 1 s asked for
DEFAULT_REL_TOL = 1e-4
EXPRESSION_REL_TOL = 1e-6  # plain numbers inside expression-type items
ABS_TOL = 1e-8
MAX_TEXT = 300  # a free-text response compared whole is at most this long (its tail)

_SPECIAL_TOKENS = ("<|end|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "</s>")


@dataclass(frozen=True)
class Grade:
    """The verdict on one response. ``correct`` is None when no verdict could be reached."""

    correct: bool | None
    extracted: str | None
    reason: str


# ---------------------------------------------------------------- numbers

_UNIT_GROUP = re.compile(r"\\(?:text|mathrm|mbox|operatorname|textrm|mathit)\s*\{[^{}]*\}")
_SCI = re.compile(
    r"([-+]?(?:\d+\.?\d*|\.\d+))\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{?\s*([-+−]?\d+)\s*\}?"
)
_POW10 = re.compile(r"^10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?$")
_FRAC = re.compile(r"^([-+]?)\\frac\s*\{\s*([-+]?[\d.]+)\s*\}\s*\{\s*([-+]?[\d.]+)\s*\}$")
_SLASH = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_LEADING = re.compile(
    r"^([-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(\s*[A-Za-zμΩÅ/][^=]*)?$", re.DOTALL
)
# "approximately 2.71", "about 5", "≈ 0.3", "~12": the hedge is not part of the answer.
_HEDGE = re.compile(
    r"^(?:(?:approximately|approx\.?|about|around|roughly|nearly|almost|circa|close to|"
    r"≈|\\approx|\\sim|~)\s*)+",
    re.IGNORECASE,
)
_APPROX_SIGN = re.compile(r"≈|\\approx|\\simeq|\\sim(?![a-z])")


def _clean_latex(text: str) -> str:
    text = text.replace("\u2212", "-").replace("$", "").replace("\\!", "").replace("\\,", "")
    for token in ("\\left", "\\right", "\\displaystyle", "\\;", "\\ ", "~"):
        text = text.replace(token, " " if token in ("\\;", "\\ ", "~") else "")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    for token in ("^\\circ", "^{\\circ}", "\\circ", "°", "\\%", "%"):
        text = text.replace(token, "")
    return text.strip()


def to_number(text: str | None) -> float | None:
    """A plain number written in ``text`` (units and LaTeX dressing removed), else None."""
    if text is None:
        return None
    text = _APPROX_SIGN.sub("=", text.strip())
    text = _HEDGE.sub("", text)
    text = _clean_latex(text)
    if "=" in text:
        text = text.rsplit("=", 1)[1].strip()
    text = _HEDGE.sub("", text)
    text = _UNIT_GROUP.sub(" ", text).strip()
    text = _SCI.sub(lambda m: f"{m.group(1)}e{m.group(2).replace('−', '-')}", text)
    text = text.strip().rstrip(".").strip()
    for pattern, build in (
        (_POW10, lambda m: f"1e{m.group(1)}"),
        (_FRAC, None),
        (_SLASH, None),
    ):
        match = pattern.match(text)
        if match is None:
            continue
        if build is not None:
            return _float(build(match))
        if pattern is _FRAC:
            sign, num, den = match.groups()
            value = _ratio(num, den)
            return None if value is None else (-value if sign == "-" else value)
        return _ratio(*match.groups())
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if _FLOAT.match(text):
        return _float(text)
    match = _LEADING.match(text)  # "50.7 atm", "12 apples"
    if match and match.group(2):
        number = match.group(1)
        if "," in number and not _THOUSANDS.match(number):
            return None
        return _float(number.replace(",", ""))
    return None


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _ratio(num: str, den: str) -> float | None:
    top, bottom = _float(num), _float(den)
    if top is None or not bottom:
        return None
    return top / bottom


def close(value: float, expected: float, rel_tol: float) -> bool:
    """Whether ``value`` is within ``rel_tol`` of ``expected`` (with a tiny absolute floor)."""
    return abs(value - expected) <= max(rel_tol * abs(expected), ABS_TOL)


# ---------------------------------------------------------------- math-verify


_CONFIGS = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=4096)
def _parse_math(text: str):
    """math-verify's parse of one extracted answer; the caller screens and time-limits it."""
    return parse("\\boxed{" + text + "}", extraction_config=_CONFIGS, parsing_timeout=None)


@lru_cache(maxsize=1)
def _warm_up() -> None:
    """Parse once outside any time limit: the first call builds the LaTeX parser (~0.3 s)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" notice
    for gold, target in (
        ("\\frac{1}{2}", "(0, 1]"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\{\\sqrt{2}, x^2\\} \\cup [1,2)"),
        ("f(x)=2 x", "\\binom{2n}{n}"),
    ):
        verify(_parse_math(gold), _parse_math(target), timeout_seconds=None)


def _verify(reference: str, candidate: str) -> bool | None:
    """math-verify equivalence, or None when either side does not parse."""
    gold, target = _parse_math(reference), _parse_math(candidate)
    if not gold or not target:
        return None
    return bool(verify(gold, target, timeout_seconds=None, allow_set_relation_comp=False))


def _symbolic_number(text: str) -> float | None:
    """The numeric value of a closed-form answer such as ``\\sqrt{2}/2`` (screened first)."""
    if unsafe_reason(text):
        return None
    parsed = _parse_math(text)
    if not parsed:
        return None
    try:
        value = complex(parsed[0].evalf(15))
    except (TypeError, ValueError, AttributeError, OverflowError, ArithmeticError):
        return None
    return value.real if abs(value.imag) < 1e-12 and math.isfinite(value.real) else None


def _normalise_text(text: str) -> str:
    text = _clean_latex(text)
    text = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", text)
    return re.sub(r"[\s{}]+", "", text).rstrip(".").lower()


# ---------------------------------------------------------------- by answer type


def _grade_number(candidate: str, how: str, reference: str, integer: bool, meta: dict) -> Grade:
    expected = to_number(reference)
    if expected is None:
        expected = _symbolic_number(reference)
    if expected is None:
        return _grade_expression(candidate, how, reference, meta)
    value = to_number(candidate)
    source = how
    if value is None:
        value = _symbolic_number(candidate)
        source = f"{how}, symbolic"
    if value is None:
        return Grade(False, candidate, f"{how}: not a number")
    tolerance = 1e-9 if integer else float(meta.get("rel_tol") or DEFAULT_REL_TOL)
    correct = close(value, expected, tolerance)
    return Grade(correct, candidate, f"{source}: {'match' if correct else 'mismatch'}")


def _split_items(text: str) -> list[str]:
    text = _clean_latex(text).strip()
    while len(text) >= 2 and text[0] in "([{" and text[-1] in ")]}":
        inner = text[1:-1]
        if _depth_ok(inner):
            text = inner.strip()
        else:
            break
    return [part.strip() for part in re.split(r",|;|\band\b", text) if part.strip()]


def _depth_ok(text: str) -> bool:
    depth = 0
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if depth < 0:
            return False
    return depth == 0


_PROSE_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|(?<![\w.])-?\.\d+")
_SENTENCE_END = re.compile(r"(?<=[^\d])\.\s|\n")


def prose_numbers(response: str, count: int) -> str | None:
    """The last sentence of ``response`` that states exactly ``count`` numbers, as a tuple
    ("the three values are 4, 9 and 0.5" -> "(4, 9, 0.5)"), or None."""
    sentences = [s for s in _SENTENCE_END.split(response[-3000:]) if s.strip()]
    for sentence in reversed(sentences[-8:]):
        numbers = [n.rstrip(",") for n in _PROSE_NUMBER.findall(sentence)]
        numbers = [n.replace(",", "") if _THOUSANDS.match(n) else n for n in numbers]
        if len(numbers) == count and all(to_number(n) is not None for n in numbers):
            return "(" + ", ".join(numbers) + ")"
    return None


def _grade_list(
    candidate: str, how: str, reference: str, meta: dict, response: str = "", truncated=False
) -> Grade:
    expected = [to_number(part) for part in _split_items(reference)]
    if not expected or any(v is None for v in expected):
        return _grade_expression(candidate, how, reference, meta)
    values = [to_number(part) for part in _split_items(candidate)]
    if (len(values) != len(expected) or None in values) and not truncated:
        stated = prose_numbers(response, len(expected))
        if stated is not None:
            candidate, how = stated, f"{how}, numbers in prose"
            values = [to_number(part) for part in _split_items(candidate)]
    if any(v is None for v in values):
        return Grade(False, candidate, f"{how}: not a list of numbers")
    if len(values) != len(expected):
        return Grade(False, candidate, f"{how}: {len(values)} items, expected {len(expected)}")
    tolerance = float(meta.get("rel_tol") or DEFAULT_REL_TOL)
    correct = all(close(v, e, tolerance) for v, e in zip(values, expected, strict=True))
    return Grade(correct, candidate, f"{how}: list {'match' if correct else 'mismatch'}")


def _grade_expression(candidate: str, how: str, reference: str, meta: dict) -> Grade:
    if _normalise_text(candidate) == _normalise_text(reference):
        return Grade(True, candidate, f"{how}: identical")
    expected, value = to_number(reference), to_number(candidate)
    if expected is not None and value is not None:
        correct = close(value, expected, float(meta.get("rel_tol") or EXPRESSION_REL_TOL))
        return Grade(correct, candidate, f"{how}: number {'match' if correct else 'mismatch'}")
    problem = unsafe_reason(candidate)
    if problem:
        return Grade(False, candidate, f"{how}: refused ({problem})")
    if unsafe_reason(reference):
        return Grade(None, candidate, "reference too costly to parse")
    verdict = _verify(reference, candidate)
    if verdict is None:
        return Grade(False, candidate, f"{how}: does not parse")
    return Grade(verdict, candidate, f"{how}: math-verify {'match' if verdict else 'mismatch'}")


_LETTER = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?(?:$|[).:\s])")
_LETTER_IN_TEXT = (
    re.compile(r"answer\s*(?:is|:)?\s*[:*\s]*\(?\s*([A-J])\s*\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])"),
)


def _letter(text: str) -> str | None:
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", text).strip(" *$")
    text = re.sub(r"^(?:option|choice)\s*", "", text, flags=re.IGNORECASE)
    match = _LETTER.match(text)
    return match.group(1).upper() if match else None


def _grade_option(response: str, reference: str, truncated: bool = False) -> Grade:
    expected = _letter(reference) or reference.strip().upper()
    boxed = last_boxed(response[-20_000:])
    found, how = (_letter(boxed), "boxed") if boxed else (None, "")
    if found is None:
        tail = response[-2000:]
        for label, pattern in zip(
            ("answer is", "(X)", "last letter"), _LETTER_IN_TEXT, strict=True
        ):
            matches = pattern.findall(tail)
            if matches:
                found, how = matches[-1].upper(), label
                break
    if found is None:
        return Grade(False, None, "no option letter")
    if truncated and how in ("(X)", "last letter"):
        # a letter met in passing in a cut-off explanation is not the model's choice
        return Grade(
            False, None, "no final answer (truncated response; a stray letter is not used)"
        )
    correct = found == expected
    return Grade(correct, found, f"{how}: {'match' if correct else 'mismatch'}")


_TRUE, _FALSE = {"true", "yes", "correct", "t"}, {"false", "no", "incorrect", "f"}


def _grade_boolean(response: str, reference: str) -> Grade:
    expected = reference.strip().lower() in _TRUE
    candidate, how = extract_answer(response)
    words = re.findall(r"[a-z]+", _normalise_text(candidate or ""))
    value = next((w in _TRUE for w in reversed(words) if w in _TRUE | _FALSE), None)
    if value is None:
        words = re.findall(r"\b(true|false|yes|no)\b", response[-500:].lower())
        value, how = (words[-1] in _TRUE, "last true/false") if words else (None, how)
    if value is None:
        return Grade(False, candidate, "no true/false answer")
    correct = value == expected
    return Grade(correct, str(value), f"{how}: {'match' if correct else 'mismatch'}")


def _grade_text(candidate: str, how: str, reference: str) -> Grade:
    if _normalise_text(candidate) == _normalise_text(reference):
        return Grade(True, candidate, f"{how}: identical")
    expected, value = to_number(reference), to_number(candidate)
    if expected is not None and value is not None:
        correct = close(value, expected, 1e-2)
        return Grade(correct, candidate, f"{how}: number {'match' if correct else 'mismatch'}")
    return Grade(None, candidate, "free-text answer: needs the LLM judge")


def _grade(
    response: str, reference: str, answer_type: str, meta: dict, truncated: bool = False
) -> Grade:
    if answer_type == "option":
        return _grade_option(response, reference, truncated)
    if answer_type == "boolean":
        return _grade_boolean(response, reference)
    candidate, how = extract_answer(response)
    if answer_type == "text" and (candidate is None or how == "last number"):
        # no stated answer: the whole response may still be the answer itself
        return _grade_text(response.strip()[-MAX_TEXT:], "whole response", reference)
    if candidate is None:
        return Grade(False, None, how)
    if how == "last number" and answer_type == "list" and not truncated:
        return _grade_list(candidate, how, reference, meta, response)
    if how == "last number" and (truncated or answer_type not in ("integer", "numeric")):
        # A number met in passing (in a truncated repetition loop, or inside a derivation of
        # an expression) is not the model's answer.
        why = "truncated response" if truncated else f"{answer_type} answer"
        return Grade(False, None, f"no final answer ({why}; the last number is not used)")
    if answer_type in ("integer", "numeric"):
        return _grade_number(candidate, how, reference, answer_type == "integer", meta)
    if answer_type == "list":
        return _grade_list(candidate, how, reference, meta, response, truncated)
    if answer_type == "expression":
        return _grade_expression(candidate, how, reference, meta)
    if answer_type == "text":
        return _grade_text(candidate, how, reference)
    return Grade(None, candidate, f"unknown answer type {answer_type!r}")


def grade(
    response: str | None,
    reference: str,
    answer_type: str,
    *,
    metadata: dict | str | None = None,
    time_limit: float | None = TIME_LIMIT,
    truncated: bool = False,
) -> Grade:
    """Grade one response against its reference answer, within ``time_limit`` CPU seconds.

    ``truncated``: the response hit its token limit, so its last number is not an answer.
    """
    if not isinstance(response, str) or not response.strip():
        return Grade(False, None, "empty response")
    meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata or {})
    for token in _SPECIAL_TOKENS:
        response = response.replace(token, "")
    response = response.replace("\x00", "")
    _warm_up()
    try:
        with deadline(time_limit):
            return _grade(response, str(reference), answer_type, meta, truncated)
    except GradingTimeout:
        return Grade(None, None, "timeout")
    except RecursionError:
        return Grade(None, None, "grader error: recursion too deep")
    except Exception as error:  # a grader bug must not stop a whole table
        return Grade(None, None, f"grader error: {type(error).__name__}")


def grade_table(
    generations: pd.DataFrame,
    benchmark: pd.DataFrame,
    *,
    time_limit: float | None = TIME_LIMIT,
) -> pd.DataFrame:
    """One grade row per generation row, keyed by ``item_id``.

    A row whose generation failed (``error`` set: a prompt longer than the context, a crashed
    engine) gets no verdict (``correct`` null), never ``False``: the model was not wrong.
    """
    columns = ["reference", "answer_type"]
    if "metadata" in benchmark.columns:
        columns.append("metadata")
    references = benchmark.drop_duplicates("item_id").set_index("item_id")[columns]
    errors = generations["error"] if "error" in generations.columns else [None] * len(generations)
    finish = generations.get("finish_reason", pd.Series([None] * len(generations)))
    rows = []
    for item_id, response, error, finish_reason in zip(
        generations["item_id"], generations["response"], errors, finish, strict=True
    ):
        if isinstance(error, str) and error:
            verdict = Grade(None, None, f"no verdict: generation error: {error[:200]}")
            rows.append({"item_id": item_id, **asdict(verdict)})
            continue
        if item_id not in references.index:
            rows.append({"item_id": item_id, **asdict(Grade(None, None, "item not in benchmark"))})
            continue
        ref = references.loc[item_id]
        verdict = grade(
            response,
            ref["reference"],
            ref["answer_type"],
            metadata=ref.get("metadata"),
            time_limit=time_limit,
            truncated=finish_reason == "length",
        )
        rows.append({"item_id": item_id, **asdict(verdict)})
    grades = pd.DataFrame(rows, columns=["item_id", "correct", "extracted", "reason"])
    grades["correct"] = grades["correct"].astype(object)
    grades["grader"] = GRADER_NAME
    grades["grader_version"] = GRADER_VERSION
    grades["truncated"] = [f == "length" for f in finish]
    return grades
