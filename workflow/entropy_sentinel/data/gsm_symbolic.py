"""Instantiate GSM-Symbolic templates into fresh problems (Apple did not publish its generator).

A template's ``question_annotated`` is the question text with ``{var, default}`` placeholders,
then ``#init:`` lines (``- $x = range(30, 90)``, ``- n = sample(names)``), ``#conditions:``
lines and ``#answer: <expr>``. Expressions are evaluated by ``SafeEvaluator``, a whitelist
interpreter over ``ast`` (never ``eval``). Each instance draws the variables from a seeded
RNG and redraws, up to a bound, until every condition holds; templates whose conditions
cannot be met (or that use unsupported syntax) are skipped and counted.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SEQUENCE = 100_000
MAX_INT_BITS = 256
MAX_ATTEMPTS = 2_000  # draws per instance before the template is given up


class TemplateError(Exception):
    """A template uses syntax or names the evaluator does not support."""


class WordInt(int):
    """An integer shown in the question as words ('twice', 'four')."""

    text: str

    def __new__(cls, value: int, text: str) -> WordInt:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


class WordFraction(Fraction):
    """A fraction shown in the question as words or digits ('a third', '1/4')."""

    text: str

    def __new__(cls, numerator: int, denominator: int, text: str) -> WordFraction:
        obj = super().__new__(cls, numerator, denominator)
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


def _ints(pairs: list[tuple[int, str]]) -> list[WordInt]:
    return [WordInt(v, t) for v, t in pairs]


def _fracs(triples: list[tuple[int, int, str]]) -> list[WordFraction]:
    return [WordFraction(n, d, t) for n, d, t in triples]


_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy"}
_TENS |= {8: "eighty", 9: "ninety"}


def number_word(n: int) -> str:
    """English words for 0..99 (digits beyond that)."""
    if 0 <= n < len(_NUMBER_WORDS):
        return _NUMBER_WORDS[n]
    if 20 < n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_NUMBER_WORDS[ones]}" if ones else "")
    return str(n)


# The vocabularies that templates sample from. Apple's lists are unpublished; these follow
# the defaults that appear in the templates.
WORD_LISTS: dict[str, list] = {
    "names_male": [
        "James",
        "Liam",
        "Noah",
        "Oliver",
        "Elijah",
        "Mateo",
        "Lucas",
        "Hiroshi",
        "Ahmed",
        "Diego",
        "Ravi",
        "Kofi",
        "Mohammed",
        "Tariq",
        "Jamal",
        "Luis",
        "Ibrahim",
        "Sanjay",
        "Theo",
        "Viktor",
    ],
    "names_female": [
        "Olivia",
        "Emma",
        "Amelia",
        "Sophia",
        "Ava",
        "Mia",
        "Isabella",
        "Zahra",
        "Priya",
        "Mei",
        "Aisha",
        "Valentina",
        "Yara",
        "Sofia",
        "Nia",
        "Leilani",
        "Chloe",
        "Fatima",
        "Ingrid",
        "Keiko",
    ],
    "currencies_sym": ["$", "€", "£", "¥", "₺", "₹"],
    "fruits": [
        "apple",
        "banana",
        "kiwi",
        "pineapple",
        "mango",
        "peach",
        "pear",
        "plum",
        "orange",
        "cherry",
    ],
    "colors": [
        "blue",
        "green",
        "orange",
        "red",
        "teal",
        "yellow",
        "purple",
        "pink",
        "white",
        "black",
    ],
    "sports": ["basketball", "soccer", "tennis", "volleyball", "baseball", "hockey"],
    "cities": ["Los Angeles", "New York", "Chicago", "Houston", "Seattle", "Boston"],
    "weekdays": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "weights_sm": ["ounce", "gram"],
    "weights_med": ["pound", "kilogram"],
    "length_lg": ["mile", "kilometer"],
    "multi_times": _ints([(2, "twice"), (3, "three times"), (4, "four times"), (5, "five times")]),
    "multiple_ice": _ints([(2, "twice"), (3, "thrice")]),
    "multiple": _ints([(2, "double"), (3, "triple"), (4, "quadruple")]),
    "fractions": _fracs([(1, 2, "half"), (1, 3, "1/3"), (1, 4, "1/4"), (1, 5, "1/5")])
    + _fracs([(2, 3, "2/3"), (3, 4, "3/4")]),
    "fraction_alph": _fracs([(1, 2, "half"), (1, 3, "a third"), (1, 4, "a quarter")])
    + _fracs([(1, 5, "a fifth"), (1, 10, "a tenth")]),
    "fraction_nums": _fracs([(1, 2, "1/2"), (1, 3, "1/3"), (1, 4, "1/4"), (1, 5, "1/5")])
    + _fracs([(2, 3, "2/3"), (3, 4, "3/4"), (2, 5, "2/5")]),
    "fraction_alnum": _fracs([(1, 2, "half"), (1, 3, "one-third"), (1, 4, "one-fourth")])
    + _fracs([(1, 5, "one-fifth"), (2, 3, "two-thirds"), (3, 4, "three quarters")])
    + _fracs([(3, 5, "three-fifths"), (1, 3, "1/3"), (1, 4, "1/4"), (1, 8, "1/8")]),
    "fraction_decimals": [0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.8],
}
WORD_LISTS["names"] = WORD_LISTS["names_male"] + WORD_LISTS["names_female"]


# ---------------------------------------------------------------- the safe evaluator


def _check_size(value):
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ArithmeticError("integer too large")
    if isinstance(value, (list, tuple, str)) and len(value) > MAX_SEQUENCE:
        raise ArithmeticError("sequence too long")
    return value


def _pow(base, exponent):
    if not isinstance(exponent, (int, float, Fraction)) or abs(exponent) > 64:
        raise ArithmeticError("exponent too large")
    if isinstance(base, (int, float, Fraction)) and abs(base) > 2**32 and abs(exponent) > 4:
        raise ArithmeticError("power too large")
    return base**exponent


def _mul(left, right):
    if isinstance(left, (list, tuple, str)) or isinstance(right, (list, tuple, str)):
        count = right if isinstance(left, (list, tuple, str)) else left
        size = len(left) if isinstance(left, (list, tuple, str)) else len(right)
        if not isinstance(count, int) or count * size > MAX_SEQUENCE:
            raise ArithmeticError("sequence too long")
    return left * right


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def is_int(value) -> bool:
    """Whether a number is (within float error) an integer."""
    try:
        return math.isfinite(float(value)) and abs(float(value) - round(float(value))) < 1e-9
    except (TypeError, ValueError, OverflowError):
        return False


def divides(a, b) -> bool:
    """Whether ``b`` divides ``a`` exactly (``a / b`` is an integer)."""
    return b != 0 and is_int(Fraction(a) / Fraction(b) if _exact(a, b) else a / b)


def _exact(*values) -> bool:
    return all(isinstance(v, (int, Fraction)) for v in values)


def _bounded_range(*args) -> list:
    if not all(isinstance(a, int) for a in args):
        raise TemplateError("range() needs integers")
    values = range(*args)
    if len(values) > MAX_SEQUENCE:
        raise ArithmeticError("range too long")
    return list(values)


def _float_range(start, stop, step=1.0) -> list[float]:
    if step <= 0 or (stop - start) / step > MAX_SEQUENCE:
        raise ArithmeticError("range too long")
    count = math.ceil((stop - start) / step - 1e-9)
    return [round(start + i * step, 10) for i in range(max(count, 0))]


class SafeEvaluator:
    """Evaluates template expressions: arithmetic, comparisons, and whitelisted calls only."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.functions = {
            "range": _bounded_range,
            "arange": _float_range,
            "frange": _float_range,
            "list": lambda x=(): list(x),
            "int": int,
            "float": float,
            "round": round,
            "min": min,
            "max": max,
            "abs": abs,
            "len": len,
            "sum": sum,
            "is_int": is_int,
            "divides": divides,
            "Fraction": self._fraction,
            "sample": self._sample,
            "sample_sequential": self._sample_sequential,
            "shuffle_list": self._shuffle,
            "fix_floats": lambda xs: [round(x, 2) for x in xs],
            "numbers_within": lambda a, b: [WordInt(n, number_word(n)) for n in range(a, b + 1)],
            "randint": self._randint,
        }

    @staticmethod
    def _fraction(a, b=1):
        if isinstance(a, float) or isinstance(b, float):
            return Fraction(a).limit_denominator(10**6) / Fraction(b).limit_denominator(10**6)
        return Fraction(a, b)

    def _sample(self, seq, k=None):
        seq = list(seq)
        return self.rng.choice(seq) if k is None else self.rng.sample(seq, k)

    def _sample_sequential(self, seq, k):
        seq = list(seq)
        start = self.rng.randrange(len(seq) - k + 1)
        return seq[start : start + k]

    def _shuffle(self, seq):
        seq = list(seq)
        self.rng.shuffle(seq)
        return seq

    def _randint(self, low, high, size=None):
        if size is None:
            return self.rng.randrange(low, high)
        if size > MAX_SEQUENCE:
            raise ArithmeticError("sample too large")
        return [self.rng.randrange(low, high) for _ in range(size)]

    def evaluate(self, expression: str, env: dict):
        """The value of ``expression`` with ``env`` (and the word lists) as its names."""
        expression = re.sub(r"\$(?=[A-Za-z_])", "", expression.strip())  # "$ans" means ans
        try:
            tree = ast.parse(expression, mode="eval")
        except SyntaxError as error:
            raise TemplateError(f"syntax error in {expression!r}") from error
        return self._eval(tree.body, env)

    def _call_name(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):  # np.arange, np.random.randint
            return node.attr
        raise TemplateError(f"unsupported call target {ast.dump(node)[:60]}")

    def _eval(self, node: ast.expr, env: dict):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str)) and not isinstance(node.value, bool):
                return node.value
            if isinstance(node.value, bool) or node.value is None:
                return node.value
            raise TemplateError(f"unsupported constant {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in WORD_LISTS:
                return WORD_LISTS[node.id]
            if node.id in ("True", "False"):
                return node.id == "True"
            raise TemplateError(f"unknown name {node.id!r}")
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [self._eval(e, env) for e in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._eval(node.left, env), self._eval(node.right, env)
            return _check_size(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._eval(node.operand, env))
        if isinstance(node, ast.BoolOp):
            values = (self._eval(v, env) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARE:
                    raise TemplateError(f"unsupported comparison {type(op).__name__}")
                right = self._eval(comparator, env)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            branch = node.body if self._eval(node.test, env) else node.orelse
            return self._eval(branch, env)
        if isinstance(node, ast.Subscript):
            container = self._eval(node.value, env)
            if isinstance(node.slice, ast.Slice):
                bounds = [
                    None if part is None else self._eval(part, env)
                    for part in (node.slice.lower, node.slice.upper, node.slice.step)
                ]
                if not all(b is None or isinstance(b, int) for b in bounds):
                    raise TemplateError("only integer slices are supported")
                return container[slice(*bounds)]
            index = self._eval(node.slice, env)
            if not isinstance(index, int):
                raise TemplateError("only integer subscripts are supported")
            return container[index]
        if isinstance(node, ast.Call):
            name = self._call_name(node.func)
            if name not in self.functions or node.keywords:
                raise TemplateError(f"unsupported call {name!r}")
            args = [self._eval(a, env) for a in node.args]
            return _check_size(self.functions[name](*args))
        raise TemplateError(f"unsupported syntax {type(node).__name__}")


# ---------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{(\w+)\s*,\s*([^{}]*)\}")
_ANSWER = re.compile(r"#answer\s*[:=]")
_ASSIGN = re.compile(r"^-\s*(.+?)\s*=\s*(.+)$")


def parse_template(annotated: str) -> dict:
    """Split ``question_annotated`` into text, init assignments, conditions and answer."""
    text, _, rest = annotated.partition("#init:")
    init_block, _, rest = rest.partition("#conditions:")
    parts = _ANSWER.split(rest, maxsplit=1)
    conditions_block, answer = parts[0], parts[1] if len(parts) > 1 else ""
    if not answer.strip():
        parts = _ANSWER.split(init_block, maxsplit=1)
        init_block, answer = parts[0], parts[1] if len(parts) > 1 else ""
    assignments = []
    for line in init_block.splitlines():
        match = _ASSIGN.match(line.strip())
        if match:
            targets = [t.strip().lstrip("$").strip() for t in match.group(1).split(",")]
            assignments.append((targets, match.group(2).strip()))
    conditions = [
        c.strip()[1:].strip() for c in conditions_block.splitlines() if c.strip()[:1] == "-"
    ]
    answer = answer.strip()
    if answer.startswith("{") and answer.endswith("}"):
        answer = answer[1:-1]
    return {"text": text.strip(), "init": assignments, "conditions": conditions, "answer": answer}


def _show(value) -> str:
    if isinstance(value, (WordInt, WordFraction)):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6f}".rstrip("0")
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else f"{value}"
    return str(value)


def render_answer(value) -> str:
    """The final answer as GSM8K writes it: an integer, else a short decimal."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise ArithmeticError(f"answer is not a number: {value!r}")
    if is_int(value):
        return str(round(value))
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def fill(text: str, env: dict) -> str:
    """The question text with each ``{var, default}`` replaced by the variable's value."""
    return _PLACEHOLDER.sub(
        lambda m: _show(env[m.group(1)]) if m.group(1) in env else m.group(2).strip(), text
    )


def _draw(template: dict, evaluator: SafeEvaluator) -> dict:
    env: dict = {}
    for targets, expression in template["init"]:
        value = evaluator.evaluate(expression, env)
        if len(targets) == 1:
            if isinstance(value, (list, tuple, range)):
                value = evaluator.rng.choice(list(value))
            env[targets[0]] = value
        else:
            values = list(value)
            if len(values) < len(targets):
                raise TemplateError("not enough values to unpack")
            env.update(zip(targets, values, strict=False))
    return env


def instantiate(template: dict, rng: random.Random, max_attempts: int = MAX_ATTEMPTS):
    """One instance ``(question, answer, env)``; None if no draw met the conditions."""
    evaluator = SafeEvaluator(rng)
    for _ in range(max_attempts):
        try:
            env = _draw(template, evaluator)
            if all(evaluator.evaluate(c, env) for c in template["conditions"]):
                answer = evaluator.evaluate(template["answer"], env)
                question = fill(template["text"], env)
                return question, render_answer(answer), env
        except (ArithmeticError, ValueError, TypeError, IndexError, KeyError):
            continue  # e.g. division by zero for this draw; redraw
    return None


def instantiate_file(path: Path, instances: int, seed: int = 0) -> tuple[list[dict], str | None]:
    """Instances of one template file, and why it was skipped (None if it was not)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
        annotated = data["question_annotated"]
    except UnicodeDecodeError as error:
        return [], f"unreadable template: not UTF-8 (byte {error.start + 1})"
    except json.JSONDecodeError as error:
        return [], f"unreadable template: invalid JSON (line {error.lineno}: {error.msg})"
    except (KeyError, TypeError):
        return [], "unreadable template: no question_annotated"
    template = parse_template(annotated)
    rng = random.Random(f"{seed}:{Path(path).parent.name}/{Path(path).name}")
    rows, seen = [], set()
    try:
        for _ in range(instances * 3):
            if len(rows) == instances:
                break
            result = instantiate(template, rng)
            if result is None:
                break
            question, answer, _ = result
            if question in seen:
                continue
            seen.add(question)
            rows.append({"question": question, "answer": f"#### {answer}", "instance": len(rows)})
    except TemplateError as error:
        return [], f"unsupported template: {error}"
    if not rows:
        return [], "conditions never met"
    template_id = int(data.get("id_shuffled", Path(path).stem))
    for row in rows:
        row |= {"id": template_id, "original_id": data.get("id_orig")}
    return rows, None


def instantiate_folder(
    folder: str | Path, variant: str = "p1", instances: int = 50, seed: int = 0
) -> list[dict]:
    """GSM8K-style records for every template of ``folder/variant`` (skips are logged)."""
    folder = Path(folder)
    directory = folder / variant if (folder / variant).is_dir() else folder
    records: list[dict] = []
    skipped: Counter = Counter()
    for path in sorted(directory.glob("*.json")):
        rows, reason = instantiate_file(path, instances, seed)
        if reason:
            skipped[reason.split(":")[0]] += 1
            log.warning("skipped template %s: %s", path, reason)
        records.extend({**row, "__where__": str(path)} for row in rows)  # loaders.WHERE
    instantiate_folder.last_skipped = dict(skipped)  # type: ignore[attr-defined]
    if skipped:
        log.info("%s: skipped templates %s", directory, dict(skipped))
    return records
