"""GSM-Symbolic instantiator: the safe evaluator, and fresh instances of the real templates."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from entropy_sentinel.data.gsm_symbolic import (
    SafeEvaluator,
    TemplateError,
    instantiate,
    instantiate_file,
    is_int,
    parse_template,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
TEMPLATES = SHARED / "gsm_symbolic" / "templates"

TOY = """{n, Ben} has {x, 10} apples and eats {frac, half} of them.

#init:
- n = sample(names)
- $x = range(10, 40, 2)
- $frac = sample(fractions)

#conditions:
- is_int(x * frac)
- 4 < x < 30

#answer: int(x - x * frac)"""


@pytest.fixture
def evaluator():
    return SafeEvaluator(random.Random(0))


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "(1).__class__",
        "open('/etc/passwd')",
        "lambda: 1",
        "[x for x in range(3)]",
        "eval('1')",
        "x.__dict__",
    ],
)
def test_evaluator_rejects_anything_outside_the_whitelist(evaluator, expression):
    with pytest.raises(TemplateError):
        evaluator.evaluate(expression, {"x": 1})


@pytest.mark.parametrize("expression", ["9**9**9", "2**100000", "[1] * 10**9", "range(10**9)"])
def test_evaluator_bounds_costly_arithmetic(evaluator, expression):
    with pytest.raises(ArithmeticError):
        evaluator.evaluate(expression, {})


def test_evaluator_arithmetic(evaluator):
    env = {"a": 6, "b": 4}
    assert evaluator.evaluate("a * b - a // b + a % b ** 2", env) == 6 * 4 - 1 + 6
    assert evaluator.evaluate("1 < a < 7 and not b > 5", env) is True
    assert evaluator.evaluate("divides(a * b, 8) and is_int(a / 3)", env) is True
    assert evaluator.evaluate("max(a, b) + min([a, b]) + abs(-2) + len(range(3))", env) == 15
    assert evaluator.evaluate("np.arange(0.25, 1, 0.25)", env) == [0.25, 0.5, 0.75]


def test_toy_template_is_seeded_and_meets_conditions():
    template = parse_template(TOY)
    first = [instantiate(template, random.Random(7))[:2] for _ in range(1)]
    again = [instantiate(template, random.Random(7))[:2] for _ in range(1)]
    assert first == again
    for seed in range(20):
        question, answer, env = instantiate(template, random.Random(seed))
        assert is_int(env["x"] * env["frac"]) and 4 < env["x"] < 30
        assert int(answer) == int(env["x"] - env["x"] * env["frac"])
        assert f" {env['x']} apples" in question and "{" not in question


def test_impossible_conditions_are_skipped():
    template = parse_template(TOY.replace("- 4 < x < 30", "- x > 1000"))
    assert instantiate(template, random.Random(0), max_attempts=50) is None


@pytest.mark.shared
@pytest.mark.parametrize("variant", ["symbolic", "p1", "p2"])
def test_real_templates_instantiate(variant):
    folder = TEMPLATES / variant
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    paths = sorted(folder.glob("*.json"))[:25]
    ok = integral = answers = 0
    for path in paths:
        rows, reason = instantiate_file(path, instances=2, seed=1)
        if reason:
            continue
        ok += 1
        data = json.loads(path.read_text())
        template = parse_template(data["question_annotated"])
        for row in rows:
            assert "{" not in row["question"] and "#init" not in row["question"]
            answer = row["answer"].removeprefix("#### ")
            integral += answer.lstrip("-").isdigit()
            answers += 1
            if _outer_int(template["answer"]):
                assert answer.lstrip("-").isdigit(), (path.name, answer)
        # the conditions hold for a fresh draw, re-checked independently
        result = instantiate(template, random.Random(3))
        if result is not None:  # a rare template can exhaust its draws for one seed
            checker = SafeEvaluator(random.Random(0))
            assert all(checker.evaluate(c, result[2]) for c in template["conditions"]), path.name
    assert ok >= 0.85 * len(paths), f"{ok}/{len(paths)} templates instantiated"
    assert integral >= 0.85 * answers  # GSM answers are integers, bar a few fractional templates


def _outer_int(expression: str) -> bool:
    """Whether the whole answer expression is one int(...) call."""
    expression = expression.strip()
    if not expression.startswith("int"):
        return False
    depth = 0
    for index, char in enumerate(expression):
        depth += (char == "(") - (char == ")")
        if char == ")" and depth == 0:
            return index == len(expression) - 1
    return False


def test_unreadable_templates_are_skipped_and_named(tmp_path, caplog):
    from entropy_sentinel.data import load_benchmark

    folder = tmp_path / "templates" / "p1"
    folder.mkdir(parents=True)
    (folder / "0001.json").write_text(json.dumps({"question_annotated": TOY, "id_shuffled": 1}))
    (folder / "0002.json").write_bytes(b'{"question_annotated": "caf\xe9 {x, 1}"}')
    (folder / "0003.json").write_text('{"question_annotated": ')
    table = load_benchmark("gsm_symbolic", {"path": str(tmp_path), "variant": "p1", "instances": 3})
    assert len(table) == 3 and set(table["item_id"].str[:7]) == {"p1-0001"}
    assert f"skipped template {folder / '0002.json'}: unreadable template: not UTF-8" in caplog.text
    assert (
        f"skipped template {folder / '0003.json'}: unreadable template: invalid JSON" in caplog.text
    )
