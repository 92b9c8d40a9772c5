"""Final-answer extraction from free text: \\boxed{}, "the answer is", "####", last number.

Pure string scanning (no regex backtracking over nested input), so it is linear in the
length of the text and safe on any model output.
"""

from __future__ import annotations

import re

MAX_SCAN = 20_000  # only the tail of a very long response is scanned
MAX_ANSWER = 2_000  # an extracted answer longer than this is truncated

_BOX_COMMANDS = ("\\boxed", "\\fbox", "\\framebox")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.{1,300}?)(?:\n\n|\n(?=[A-Z#])|$)",
    re.IGNORECASE | re.DOTALL,
)
_HASHES = re.compile(r"####\s*([^\n]{1,300})")


MAX_GROUP = 4_000  # a brace group longer than this is not a final answer
MAX_TRIES = 50  # \\boxed occurrences tried, from the last one backwards


def _balanced(text: str, start: int) -> str | None:
    """The content of the brace group opening at ``text[start] == '{'``, if it closes soon."""
    depth = 0
    for index in range(start, min(len(text), start + MAX_GROUP)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : index]
    return None


def _box_at(text: str, position: int, command: str) -> str | None:
    cursor = position + len(command)
    if text.startswith("{", cursor):
        return _balanced(text, cursor)
    if command == "\\boxed" and text.startswith(" ", cursor):
        # "\\boxed 5": TeX's one-token argument
        token = text[cursor : cursor + 40].split(maxsplit=1)
        return token[0].rstrip("$.") if token else None
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last complete \\boxed{...} (or \\fbox, \\framebox), or None."""
    candidates = []
    for command in _BOX_COMMANDS:
        position = len(text)
        for _ in range(MAX_TRIES):
            position = text.rfind(command, 0, position)
            if position == -1:
                break
            candidates.append((position, command))
    candidates.sort(reverse=True)
    for position, command in candidates[:MAX_TRIES]:
        content = _box_at(text, position, command)
        if content is not None:
            return content
    return None


def last_number(text: str) -> str | None:
    """The last number-like token (thousands separators kept for the caller to strip)."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def extract_answer(response: str) -> tuple[str | None, str]:
    """The final answer of a response and how it was found.

    Priority: the last \\boxed{}, then "#### x", then "the answer is x", then the last number.
    """
    text = response[-MAX_SCAN:].replace("\x00", "")
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()[:MAX_ANSWER], "boxed"
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()[:MAX_ANSWER], "####"
    stated = _ANSWER_IS.findall(text[-3000:])
    if stated:
        answer = stated[-1].strip().rstrip(".").strip()
        if answer:
            return answer[:MAX_ANSWER], "answer is"
    number = last_number(text)
    if number is not None:
        return number, "last number"
    return None, "no answer found"


def answer_start(response: str) -> int | None:
    """Where the stated final answer begins in ``response`` (a character index): the last
    \\boxed{}, "#### x" or "the answer is x", as ``extract_answer`` finds them; None when the
    response states none (a last number alone is not a stated answer)."""
    offset = max(0, len(response) - MAX_SCAN)
    text = response[offset:].replace("\x00", " ")
    if last_boxed(text):
        return offset + max(text.rfind(command) for command in _BOX_COMMANDS)
    hashes = list(_HASHES.finditer(text))
    if hashes:
        return offset + hashes[-1].start()
    tail = max(0, len(text) - 3000)
    stated = [m for m in _ANSWER_IS.finditer(text[tail:]) if m.group(1).strip().rstrip(".")]
    if stated:
        return offset + tail + stated[-1].start()
    return None
