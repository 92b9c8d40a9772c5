"""The built-in demo benchmark: procedurally generated arithmetic word problems.

Difficulty is controlled per domain by the number of reasoning steps, the size of the
numbers and the number of distracting clauses (the GSM-Symbolic idea). Every item has an
exact integer answer and a stable id, and the same seed always gives the same items, so
the demo needs no download and its domains differ clearly in accuracy even for a small model.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from entropy_sentinel.data.schema import make_item

NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas")
OBJECTS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "shells", "cards")


@dataclass(frozen=True)
class Difficulty:
    """How hard a domain's items are."""

    steps: int  # arithmetic operations after the starting quantity
    max_value: int  # operands are drawn from 1..max_value
    distractors: int = 0  # irrelevant clauses with numbers in them
    operations: tuple[str, ...] = ("add", "subtract")
    word_problem: bool = True


DOMAINS: dict[str, Difficulty] = {
    "number_echo": Difficulty(steps=0, max_value=99, word_problem=False),
    "word_zero_step": Difficulty(steps=0, max_value=20),
    "sum_small": Difficulty(steps=1, max_value=9, operations=("add",), word_problem=False),
    "sum_two_digit": Difficulty(steps=1, max_value=99, operations=("add",), word_problem=False),
    "word_one_step": Difficulty(steps=1, max_value=20),
    "word_two_step": Difficulty(steps=2, max_value=50, operations=("add", "subtract", "multiply")),
    "word_distractors": Difficulty(
        steps=3, max_value=100, distractors=2, operations=("add", "subtract", "multiply")
    ),
    "product_small": Difficulty(steps=1, max_value=9, operations=("multiply",), word_problem=False),
    "product_large": Difficulty(
        steps=2, max_value=999, operations=("multiply",), word_problem=False
    ),
    "arith_chain": Difficulty(
        steps=4, max_value=999, operations=("add", "subtract", "multiply"), word_problem=False
    ),
    "word_long": Difficulty(
        steps=5, max_value=200, distractors=3, operations=("add", "subtract", "multiply")
    ),
}


def _apply(value: int, operation: str, operand: int) -> int:
    if operation == "add":
        return value + operand
    if operation == "subtract":
        return value - operand
    return value * operand


def _bare_question(rng: random.Random, d: Difficulty) -> tuple[str, int]:
    symbols = {"add": "+", "subtract": "-", "multiply": "*"}
    value = rng.randint(1, d.max_value)
    text = str(value)
    for _ in range(d.steps):
        op = rng.choice(d.operations)
        operand = rng.randint(1, d.max_value if op != "multiply" else 9)
        value = _apply(value, op, operand)
        text += f" {symbols[op]} {operand}"
    return f"What is {text}?", value


def _word_question(rng: random.Random, d: Difficulty) -> tuple[str, int]:
    name, other = rng.sample(NAMES, 2)
    obj, other_obj = rng.sample(OBJECTS, 2)
    value = rng.randint(2, d.max_value)
    clauses = [f"{name} has {value} {obj}."]
    for _ in range(d.steps):
        op = rng.choice(d.operations)
        if op == "subtract" and value <= 1:
            op = "add"
        if op == "add":
            operand = rng.randint(1, d.max_value)
            clauses.append(f"Then {name} gets {operand} more {obj}.")
        elif op == "subtract":
            operand = rng.randint(1, value - 1)
            clauses.append(f"Then {name} gives away {operand} {obj}.")
        else:
            operand = rng.randint(2, 4)
            clauses.append(f"Then the number of {obj} {name} has becomes {operand} times as many.")
        value = _apply(value, op, operand)
    for _ in range(d.distractors):
        position = rng.randint(1, len(clauses))
        clauses.insert(position, f"{other} has {rng.randint(2, d.max_value)} {other_obj}.")
    clauses.append(f"How many {obj} does {name} have now?")
    return " ".join(clauses), value


def generate_items(
    n_per_domain: int, seed: int = 0, domains: list[str] | None = None
) -> list[dict]:
    """``n_per_domain`` items for each domain (all by default), deterministically from ``seed``."""
    chosen = list(DOMAINS) if domains is None else domains
    unknown = sorted(set(chosen) - set(DOMAINS))
    if unknown:
        raise ValueError(f"unknown synthetic domains {unknown}; known: {sorted(DOMAINS)}")
    items = []
    for domain in chosen:
        difficulty = DOMAINS[domain]
        rng = random.Random(seed * 1_000_003 + zlib.crc32(domain.encode()))
        make = _word_question if difficulty.word_problem else _bare_question
        for index in range(n_per_domain):
            question, answer = make(rng, difficulty)
            items.append(
                make_item(
                    item_id=f"{domain}-{index:05d}",
                    benchmark="synthetic",
                    question=question,
                    reference=answer,
                    answer_type="integer",
                    domain=domain,
                    metadata={
                        "steps": difficulty.steps,
                        "max_value": difficulty.max_value,
                        "distractors": difficulty.distractors,
                        "seed": seed,
                    },
                )
            )
    return items
