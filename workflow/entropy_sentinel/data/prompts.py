"""Chat messages for one question: the original's raw setting or a boxed-answer template."""

from __future__ import annotations

PROMPT_STYLES = ("raw", "boxed")

BOXED_TEMPLATE = (
    "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
)


def build_messages(question: str, style: str = "raw") -> list[dict]:
    """The chat turns for ``question``; ``raw`` is the question alone, as in the original."""
    if style == "raw":
        content = question
    elif style == "boxed":
        content = BOXED_TEMPLATE.format(question=question)
    else:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, not {style!r}")
    return [{"role": "user", "content": content}]
