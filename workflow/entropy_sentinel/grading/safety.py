"""Keeping grading bounded: a CPU-time guard and a screen for expressions too costly to parse.

Symbolic parsing evaluates as it goes, so ``10^{10^{10}}`` or ``9**9**9`` would start a
huge integer power inside C code that no timer can interrupt. Those inputs are refused
before they reach a parser (``unsafe_reason``). Everything else runs under ``deadline``,
an interval timer that raises ``GradingTimeout`` in pure-Python code (sympy, antlr).

The timer counts this process's CPU time (``ITIMER_PROF``), not wall-clock time: on a busy
machine a grade that waits for a core is not cut short, so a verdict does not depend on load.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator

MAX_EXPRESSION = 400  # characters
MAX_DEPTH = 24  # nested braces / parentheses / brackets
MAX_EXPONENT = 2_000
MAX_POWERS = 12
MAX_DIGITS = 200  # a longer run of digits is not a final answer
MAX_FACTORIAL = 200

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DIGIT_RUN = re.compile(r"\d{" + str(MAX_DIGITS + 1) + ",}")
_OPEN, _CLOSE = "{([", "})]"


class GradingTimeout(BaseException):
    """Raised by ``deadline``; a BaseException so that libraries' ``except Exception`` miss it."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise ``GradingTimeout`` once the block has used ``seconds`` of CPU time (main thread
    only; time spent waiting for a core does not count).

    Off the main thread, or with ``seconds`` None, the block runs unguarded; the screen in
    ``unsafe_reason`` still applies there.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise GradingTimeout()

    previous = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSE:
            depth = max(0, depth - 1)
    return deepest


def _group_end(text: str, start: int) -> int:
    """Index just past the bracket group opening at ``start`` (or the text's end)."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] in _OPEN:
            depth += 1
        elif text[index] in _CLOSE:
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _power_in_group_before(text: str) -> bool:
    """Whether the bracket group that ends ``text`` contains a power."""
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        if text[index] in _CLOSE:
            depth += 1
        elif text[index] in _OPEN:
            depth -= 1
            if depth == 0:
                group = text[index:]
                return "^" in group or "**" in group
    return False


def _exponent_problem(text: str) -> str | None:
    matches = list(re.finditer(r"\^|\*\*", text))
    if len(matches) > MAX_POWERS:
        return "too many powers"
    for match in matches:
        base = text[: match.start()].rstrip()
        if base.endswith(tuple(_CLOSE)) and _power_in_group_before(base):
            return "power tower"
        end = match.end()
        cursor = end
        while cursor < len(text) and text[cursor] in " \t":
            cursor += 1
        if cursor < len(text) and text[cursor] in _OPEN:
            stop = _group_end(text, cursor)
        else:
            match = re.compile(r"[-+]?[\w.]*").match(text, cursor)
            stop = match.end() if match else cursor
        exponent = text[cursor:stop]
        if "^" in exponent or "**" in exponent:
            return "power tower"
        rest = text[stop:].lstrip()
        if rest.startswith(("^", "**")):
            return "power tower"
        if any(float(n) > MAX_EXPONENT for n in _NUMBER.findall(exponent)):
            return "huge exponent"
    return None


def unsafe_reason(text: str) -> str | None:
    """Why ``text`` must not be given to a symbolic parser, or None if it may."""
    if len(text) > MAX_EXPRESSION:
        return "expression too long"
    if "\x00" in text:
        return "null byte"
    if _DIGIT_RUN.search(text):
        return "number too long"
    if _depth(text) > MAX_DEPTH:
        return "nesting too deep"
    problem = _exponent_problem(text)
    if problem:
        return problem
    if ("!" in text or "factorial" in text or "Gamma" in text or "binom" in text) and any(
        float(n) > MAX_FACTORIAL for n in _NUMBER.findall(text)
    ):
        return "huge factorial"
    return None
