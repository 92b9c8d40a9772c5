"""Load any benchmark into the normalised schema: registry (local files or Hub), user file, demo.

``load_benchmark(name, settings)`` is the single entry point. Rows that cannot be used
(bytes that are not UTF-8, invalid JSON, empty question or answer, an image the text needs, a
duplicate) are skipped and counted, never fatal: the counts are logged and left in
``frame.attrs["skipped"]``, and each skipped row's place (``file:line``) and reason in
``frame.attrs["skipped_rows"]``.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd

from entropy_sentinel.data import synthetic
from entropy_sentinel.data.registry import BenchmarkSpec, get_spec
from entropy_sentinel.data.schema import ANSWER_TYPES, content_id, make_item, to_frame
from entropy_sentinel.grading.extract import last_boxed

log = logging.getLogger(__name__)


class SkipRow(Exception):
    """A source row that cannot become an item; the message is the reason counted."""


# ---------------------------------------------------------------- reading files


BAD = "__bad__"  # a record that could not be read: the value is the reason
WHERE = "__where__"  # where a record came from: "file:line" (or "file:item N", "file:row N")


def located_records(path: str | Path) -> list[dict]:
    """The records of a .jsonl, .json (list, or dict of lists/records), .csv or .parquet file.

    Each record carries its place in ``record[WHERE]``; one that cannot be read (bytes that are
    not UTF-8, invalid JSON, not an object) holds only its place and ``record[BAD]``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [_jsonl_record(raw, f"{path}:{n}") for n, raw in _lines(path) if raw.strip()]
    if suffix == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8", errors="surrogateescape"))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); a .json "
                "benchmark is parsed whole: fix it, or write it as .jsonl (one record a line) "
                "so that a bad record is skipped alone"
            ) from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else list(data.values())
        records = [r if isinstance(r, dict) else {BAD: "not a JSON object"} for r in data]
        return [_checked(r, f"{path}:item {n}") for n, r in enumerate(records, 1)]
    if suffix in (".csv", ".tsv"):
        return _csv_records(path, "\t" if suffix == ".tsv" else ",")
    if suffix not in (".parquet", ".pq"):
        raise ValueError(f"{path}: unsupported file type {suffix!r}")
    frame = pd.read_parquet(path)
    frame = frame.astype(object).where(frame.notna(), None)
    rows = frame.to_dict(orient="records")
    return [_checked(r, f"{path}:row {n}") for n, r in enumerate(rows, 1)]


# How a CSV spells a missing value (pandas.read_csv's defaults, which the loaders used before).
MISSING = frozenset(
    [
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    ]
)


def _csv_records(path: Path, sep: str) -> list[dict]:
    """CSV rows by line; a row with the wrong number of fields (or a NUL) is a bad record."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    records, header = [], None
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return records
        except csv.Error as error:
            records.append({WHERE: f"{path}:{line}", BAD: f"unreadable CSV ({error})"})
            continue
        if header is None:
            header = fields
        elif not fields:
            continue
        elif len(fields) != len(header):
            reason = f"{len(fields)} fields, the header has {len(header)}"
            records.append({WHERE: f"{path}:{line}", BAD: reason})
        else:
            values = [None if v in MISSING else v for v in fields]
            records.append(_checked(dict(zip(header, values, strict=True)), f"{path}:{line}"))


def read_records(path: str | Path) -> list[dict]:
    """The readable records of a file (see ``located_records``), without their places."""
    return [
        {k: v for k, v in r.items() if k != WHERE} for r in located_records(path) if BAD not in r
    ]


def _lines(path: Path):
    with path.open("rb") as handle:
        yield from enumerate(handle, 1)


def _jsonl_record(raw: bytes, where: str) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return {
            WHERE: where,
            BAD: f"not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
        }
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return {WHERE: where, BAD: f"invalid JSON ({error.msg} at column {error.colno})"}
    if not isinstance(record, dict):
        return {WHERE: where, BAD: "not a JSON object"}
    return {**record, WHERE: where}


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a bad byte


def _checked(record: dict, where: str) -> dict:
    """``record`` with its place; bytes that were not UTF-8 (decoded as lone surrogates) make
    it bad."""
    if BAD not in record and any(_NOT_UTF8.search(str(v)) for v in record.values()):
        return {WHERE: where, BAD: "not UTF-8"}
    return {**record, WHERE: where}


def _local_files(spec: BenchmarkSpec, path: Path, settings: Mapping) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{spec.name}: no such file or folder {path}")
    for pattern in spec.local_files:
        pattern = pattern.format(variant=settings.get("variant", "p1"))
        matches = sorted(p for p in glob.glob(str(path / pattern)) if not p.endswith("_sol.json"))
        if matches:
            return [Path(p) for p in matches]
    return []


# ---------------------------------------------------------------- small helpers


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _field(record: Mapping, *names: str) -> str:
    for name in names:
        if name and _text(record.get(name)):
            return _text(record.get(name))
    return ""


def format_number(value: object) -> str:
    """A number as a model would write it: '27' for 27.0, '0.25', '-1e-05'."""
    number = float(str(value).replace(",", "").replace("\u2212", "-").strip())
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _number_type(reference: str, default: str = "integer") -> str:
    try:
        return "integer" if float(reference).is_integer() else "numeric"
    except ValueError:
        return default if default not in ("integer", "numeric") else "expression"


def _strip_dollars(text: str) -> str:
    text = text.strip()
    if text.endswith(".") and "$" in text:
        text = text[:-1]
    return re.sub(r"\$+", "", text).strip()


def _require(question: str, reference: str) -> None:
    if not question:
        raise SkipRow("empty question")
    if not reference:
        raise SkipRow("empty answer")


# ---------------------------------------------------------------- row parsers

Row = dict  # the keyword arguments of make_item, less ``benchmark``


def _row_gsm8k(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, spec.question_field, "question")
    solution = _field(rec, spec.answer_field, "answer")
    _require(question, solution)
    if "####" not in solution:
        raise SkipRow("answer has no '####' line")
    final = solution.rsplit("####", 1)[1].strip().replace(",", "")
    try:
        reference = format_number(final)
    except ValueError as error:
        raise SkipRow("final answer is not a number") from error
    item_id = _text(rec.get(spec.id_field)) if spec.id_field else ""
    return {
        "item_id": item_id or content_id(question, prefix=f"{spec.name}-"),
        "question": question,
        "reference": reference,
        "answer_type": _number_type(reference),
        "metadata": {"solution": solution},
    }


def _row_gsm_symbolic(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    row = _row_gsm8k(rec, spec, settings)
    template, instance = _text(rec.get("id")), _text(rec.get("instance"))
    variant = settings.get("variant", "p1")
    if template and instance:
        row["item_id"] = f"{variant}-{int(float(template)):04d}-{int(float(instance)):03d}"
    row["domain"] = f"{variant}-{int(float(template)):04d}" if template else variant
    row["metadata"] |= {"variant": variant, "original_id": rec.get("original_id")}
    return row


def _row_svamp(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, "question_concat")
    if not question:
        body, ask = _field(rec, "Body"), _field(rec, "Question")
        body = body if not body or body[-1] in ".?!," else body + "."
        question = f"{body} {ask}".strip()
    answer = _field(rec, spec.answer_field, "Answer")
    _require(question, answer)
    reference = format_number(answer)
    return {
        "item_id": _field(rec, "ID", "id") or content_id(question, prefix="svamp-"),
        "question": question,
        "reference": reference,
        "answer_type": _number_type(reference),
        "domain": _field(rec, "Type") or "svamp",
        "metadata": {"equation": _field(rec, "Equation")},
    }


def _row_math500(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, "problem", "Question")
    solution = _field(rec, "solution")
    reference = _field(rec, "answer", "Answer") or (last_boxed(solution) or "").strip()
    _require(question, reference)
    return {
        "item_id": _field(rec, "unique_id") or content_id(question, prefix=f"{spec.name}-"),
        "question": question,
        "reference": reference,
        "answer_type": "expression",
        "domain": _field(rec, "subject", "type") or spec.name,
        "metadata": {"level": rec.get("level"), "solution": solution},
    }


def _row_math_csv(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question, reference = _field(rec, "Question", "problem"), _field(rec, "Answer", "answer")
    _require(question, reference)
    return {
        "item_id": content_id(question, prefix="math-"),
        "question": question,
        "reference": reference,
        "answer_type": "expression",
        "metadata": {"row": _field(rec, "Unnamed: 0", "")},
    }


_IMAGE_MARKERS = ("<image", "![", "<img")
_OLYMPIAD_TYPES = {"Numerical": "expression", "Expression": "expression"}


def _row_olympiadbench(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, "question")
    context = _field(rec, "context")
    if context:
        question = f"{context}\n{question}"
    if any(marker in question for marker in _IMAGE_MARKERS):
        raise SkipRow("needs an image")
    answers = rec.get("final_answer")
    if isinstance(answers, str):
        answers = [answers]
    answers = [a for a in (answers or []) if _text(a)]
    if not answers:
        raise SkipRow("empty answer")
    reference = _strip_dollars(", ".join(_strip_dollars(str(a)) for a in answers[:1]))
    _require(question, reference)
    kind = _field(rec, "answer_type") or "Expression"
    item_id = _field(rec, "id")
    return {
        "item_id": f"olympiadbench-{item_id}" if item_id else content_id(question, prefix="ob-"),
        "question": question,
        "reference": reference,
        "answer_type": "expression",
        "domain": _field(rec, "subfield") or spec.name,
        "metadata": {
            "olympiad_type": kind,
            "is_multiple_answer": bool(rec.get("is_multiple_answer")),
            "unit": _field(rec, "unit") or None,
            "error": _field(rec, "error") or None,
        },
    }


def _row_gpqa(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question, correct = _field(rec, "Question"), _field(rec, "Correct Answer")
    _require(question, correct)
    item_id = _field(rec, "Record ID") or content_id(question, prefix="gpqa-")
    meta = {"correct_text": correct, "subdomain": _field(rec, "Subdomain")}
    domain = _field(rec, "High-level domain") or "gpqa"
    mode = settings.get("gpqa_mode", "mcq")
    if mode == "open":
        return {
            "item_id": item_id,
            "question": question,
            "reference": correct,
            "answer_type": "text",
            "domain": domain,
            "metadata": meta | {"gpqa_mode": "open"},
        }
    if mode != "mcq":
        raise ValueError(f"gpqa_mode must be 'open' or 'mcq', not {mode!r}")
    wrong = [_field(rec, f"Incorrect Answer {i}") for i in (1, 2, 3)]
    if not all(wrong):
        raise SkipRow("missing incorrect options")
    options = [correct, *wrong]
    random.Random(f"{settings.get('seed', 0)}:{item_id}").shuffle(options)
    letters = "ABCD"
    listing = "\n".join(f"{letter}) {text}" for letter, text in zip(letters, options, strict=True))
    return {
        "item_id": item_id,
        "question": f"{question}\n\n{listing}",
        "reference": letters[options.index(correct)],
        "answer_type": "option",
        "domain": domain,
        "metadata": meta
        | {"gpqa_mode": "mcq", "options": dict(zip(letters, options, strict=True))},
    }


def _row_scibench(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, "problem_text")
    number, latex = _field(rec, "answer_number"), _field(rec, "answer_latex")
    _require(question, number)
    try:
        reference, kind = format_number(number), "numeric"
    except ValueError:
        reference, kind = number, "expression"
    source, problem = _field(rec, "source"), _field(rec, "problemid")
    return {
        # problem ids repeat across distinct problems, so the content hash is part of the id
        "item_id": content_id(question, prefix=f"scibench-{source}-{problem}-")[:-10],
        "question": question,
        "reference": reference,
        "answer_type": kind,
        "domain": source or spec.name,
        "metadata": {
            "unit": _field(rec, "unit") or None,
            "answer_latex": latex,
            "rel_tol": spec.rel_tol,
            "judge_reference": f"Answer in latex: {latex}\nAnswer as a number: {number}",
        },
    }


_THEOREMQA_TYPES = {
    "integer": "integer",
    "float": "numeric",
    "bool": "boolean",
    "list of integer": "list",
    "list of float": "list",
    "option": "option",
}


def _row_theoremqa(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    if _field(rec, "Picture") or rec.get("image") not in (None, ""):
        raise SkipRow("needs an image")
    question = _field(rec, "Question")
    answer, kind = rec.get("Answer"), _field(rec, "Answer_type")
    if kind not in _THEOREMQA_TYPES:
        raise SkipRow(f"unknown Answer_type {kind!r}")
    if isinstance(answer, str) and kind != "option":
        with contextlib.suppress(json.JSONDecodeError):
            answer = json.loads(answer.replace("True", "true").replace("False", "false"))
    if kind.startswith("list"):
        reference = "[" + ", ".join(format_number(x) for x in answer) + "]"
    elif kind == "bool":
        reference = str(bool(answer))
    elif kind == "option":
        reference = _text(answer).strip("()").upper()
    else:
        reference = format_number(answer)
    _require(question, reference)
    return {
        "item_id": _field(rec, "id") or content_id(question, prefix="tqa-"),
        "question": question,
        "reference": reference,
        "answer_type": _THEOREMQA_TYPES[kind],
        "domain": _field(rec, "field") or spec.name,
        "metadata": {
            "theoremqa_type": kind,
            "rel_tol": spec.rel_tol,
            "theorem": rec.get("theorem"),
        },
    }


def _row_matscibench(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    if _field(rec, "image"):
        raise SkipRow("needs an image")
    question, answer = _field(rec, "question"), _field(rec, "answer")
    _require(question, answer)
    kind = _field(rec, "type") or "NUM"
    if kind == "NUM" and answer.startswith("("):
        answer_type = "list"
    elif kind == "NUM":
        try:
            answer, answer_type = format_number(answer), "numeric"
        except ValueError:
            answer_type = "expression"
    else:
        answer_type = "expression"
    return {
        "item_id": _field(rec, "qid") or content_id(question, prefix="msb-"),
        "question": question,
        "reference": answer,
        "answer_type": answer_type,
        "domain": _field(rec, "primary_category", "source") or spec.name,
        "metadata": {
            "unit": _field(rec, "unit") or None,
            "matsci_type": kind,
            "rel_tol": spec.rel_tol,
            "difficulty": _field(rec, "difficulty_level") or None,
        },
    }


def _row_minerva(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question, solution = _field(rec, "problem"), _field(rec, "solution")
    reference = _field(rec, "answer") or (last_boxed(solution) or "").strip()
    _require(question, reference)
    idx = _field(rec, "idx")
    return {
        "item_id": f"minerva-{idx}" if idx else content_id(question, prefix="minerva-"),
        "question": question,
        "reference": reference,
        "answer_type": "expression",
        "domain": _field(rec, "type") or spec.name,
        "metadata": {"solution": solution},
    }


def _row_generic_math(rec: Mapping, spec: BenchmarkSpec, settings: Mapping) -> Row:
    question = _field(rec, spec.question_field, "question", "problem")
    answer = _field(rec, spec.answer_field, "answer")
    _require(question, answer)
    answer_type = spec.answer_type
    try:
        reference = format_number(answer)
        answer_type = _number_type(reference)
    except ValueError:
        reference = _strip_dollars(answer)
        answer_type = "expression"
    item_id = _field(rec, spec.id_field) if spec.id_field else ""
    return {
        "item_id": f"{spec.name}-{item_id}" if item_id else content_id(question, prefix=spec.name),
        "question": question,
        "reference": reference,
        "answer_type": answer_type,
        "metadata": {"solution": _field(rec, "solution") or None},
    }


ROW_PARSERS: dict[str, Callable[[Mapping, BenchmarkSpec, Mapping], Row]] = {
    "gsm8k": _row_gsm8k,
    "gsm_symbolic": _row_gsm_symbolic,
    "svamp": _row_svamp,
    "math500": _row_math500,
    "math_csv": _row_math_csv,
    "olympiadbench": _row_olympiadbench,
    "gpqa": _row_gpqa,
    "scibench": _row_scibench,
    "theoremqa": _row_theoremqa,
    "matscibench": _row_matscibench,
    "minerva": _row_minerva,
    "generic_math": _row_generic_math,
}


# ---------------------------------------------------------------- assembling a table


def _build(
    name: str,
    records: Iterable[Mapping],
    parse: Callable[[Mapping], Row],
) -> tuple[list[dict], Counter, list[str]]:
    """Items, the count of skipped rows per reason and each skipped row as ``place: reason``."""
    items: list[dict] = []
    skipped: Counter = Counter()
    skipped_rows: list[str] = []
    seen: set[str] = set()
    for n, record in enumerate(records, 1):
        where = record.get(WHERE, f"{name}: record {n}") if isinstance(record, Mapping) else n
        try:
            if not isinstance(record, Mapping):
                raise SkipRow("not an object")
            if BAD in record:
                raise SkipRow(record[BAD])
            row = parse({k: v for k, v in record.items() if k != WHERE})
            item = make_item(benchmark=name, **row)
            if item["item_id"] in seen:
                raise SkipRow("duplicate id")
        except SkipRow as skip:
            reason = str(skip)
        except Exception as error:  # whatever is wrong with one row must not lose the others
            reason = f"malformed row ({type(error).__name__}: {error})"
        else:
            seen.add(item["item_id"])
            items.append(item)
            continue
        skipped[reason.split(" (")[0]] += 1
        skipped_rows.append(f"{where}: {reason}")
    return items, skipped, skipped_rows


def subsample(items: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """``limit`` items chosen by ``seed`` independently of input order, in input order."""
    if not limit or limit >= len(items):
        return items
    ids = sorted(item["item_id"] for item in items)
    chosen = set(random.Random(seed).sample(ids, limit))
    return [item for item in items if item["item_id"] in chosen]


def _registry_records(spec: BenchmarkSpec, settings: Mapping) -> list[Mapping]:
    if settings.get("path"):
        path = Path(settings["path"])
        files = _local_files(spec, path, settings)
        if not files and spec.name == "gsm_symbolic":
            from entropy_sentinel.data.gsm_symbolic import instantiate_folder

            return instantiate_folder(
                path / "templates" if (path / "templates").is_dir() else path,
                variant=settings.get("variant", "p1"),
                instances=int(settings.get("instances", 50)),
                seed=int(settings.get("seed", 0)),
            )
        if not files:
            wanted = spec.local_files
            raise FileNotFoundError(f"{spec.name}: no data file matching {wanted} in {path}")
        return [record for file in files for record in located_records(file)]
    return _hub_records(
        settings.get("dataset", spec.hub_id),
        settings.get("config", spec.hub_config),
        settings.get("split", spec.hub_split),
    )


def _hub_records(dataset: str, config: str | None, split: str) -> list[Mapping]:
    """Records of a Hugging Face dataset (needs network access or a warm HF cache)."""
    from datasets import load_dataset

    rows = load_dataset(dataset, config, split=split)
    return [{**row, WHERE: f"{dataset}[{split}] row {n}"} for n, row in enumerate(rows, 1)]


def _file_parser(name: str, settings: Mapping) -> Callable[[Mapping], Row]:
    question_field = settings.get("question_field", "question")
    answer_field = settings.get("answer_field", "answer")
    answer_type = settings.get("answer_type", "expression")
    id_field, domain_field = settings.get("id_field"), settings.get("domain_field")
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, not {answer_type!r}")

    def parse(rec: Mapping) -> Row:
        question, reference = _field(rec, question_field), _field(rec, answer_field)
        if answer_type == "expression" and reference.count("####") == 1:
            reference = reference.rsplit("####", 1)[1].strip()
        _require(question, reference)
        extra = {k: v for k, v in rec.items() if k not in (question_field, answer_field)}
        return {
            "item_id": _field(rec, id_field) if id_field else content_id(question, prefix=name),
            "question": question,
            "reference": reference,
            "answer_type": answer_type,
            "domain": _field(rec, domain_field) if domain_field else name,
            "metadata": json.loads(json.dumps(extra, default=str)),
        }

    return parse


def domain_name(benchmark: str, field: str, value: object) -> str:
    """A slice named by a record field, unique across benchmarks: ``math500/level=3``."""
    return f"{benchmark}/{field}={value}"


def _domain_from_field(
    benchmark: str, settings: Mapping, row_parser: Callable, spec: BenchmarkSpec
) -> Callable[[Mapping], Row]:
    """The registry's row parser, with the domain read from ``settings["domain_field"]``."""
    field = settings.get("domain_field")

    def parse(rec: Mapping) -> Row:
        row = row_parser(rec, spec, settings)
        if field:
            value = _field(rec, field)
            if not value:
                raise SkipRow(f"no {field} (domain_field)")
            row["domain"] = domain_name(benchmark, field, value)
        return row

    return parse


def select_domains(
    name: str,
    items: list[dict],
    domains: list[str] | None,
    per_domain: int | None,
    skip: int = 0,
) -> list[dict]:
    """Items of the listed ``domains`` (all when None), items ``skip`` to ``skip + per_domain``
    of each domain in file order. A domain is matched by its full name or by the field value
    after ``=`` (``3`` for ``math500/level=3``)."""
    if domains:
        wanted = {str(d) for d in domains}
        known = {item["domain"] for item in items}
        short = {d: d.rpartition("=")[2] for d in known}
        missing = sorted(wanted - known - set(short.values()))
        if missing:
            raise ValueError(
                f"benchmarks.{name}.domains: {missing} are not domains of its items; "
                f"known: {sorted(known)}"
            )
        items = [i for i in items if i["domain"] in wanted or short[i["domain"]] in wanted]
    if per_domain or skip:
        seen: Counter = Counter()
        kept = []
        for item in items:
            index = seen[item["domain"]]
            seen[item["domain"]] += 1
            if index >= skip and (not per_domain or index < skip + per_domain):
                kept.append(item)
        if items and not kept:
            raise ValueError(
                f"benchmarks.{name}.per_domain_skip: {skip} leaves no items (its largest "
                f"domain has {max(seen.values())}); lower it"
            )
        items = kept
    return items


def load_benchmark(name: str, settings: Mapping) -> pd.DataFrame:
    """One benchmark as a normalised table; see the module docstring for ``settings``.

    ``settings["source"]`` is ``registry`` (default), ``hub``, ``file`` or ``synthetic``.
    Skipped rows are counted in ``frame.attrs["skipped"]`` and logged.
    """
    settings = dict(settings or {})
    source = settings.get("source", "registry")
    seed = int(settings.get("seed", 0))
    skipped, skipped_rows = Counter(), []
    if source == "synthetic":
        items = synthetic.generate_items(
            int(settings.get("n_per_domain", 40)), seed=seed, domains=settings.get("domains")
        )
        for item in items:  # several synthetic entries are several benchmarks
            item["benchmark"] = name
    elif source == "file":
        records = located_records(settings["path"])
        items, skipped, skipped_rows = _build(name, records, _file_parser(name, settings))
    elif source in ("registry", "hub"):
        spec = get_spec(settings.get("name", name))
        if source == "hub":
            settings.pop("path", None)
        row_parser = ROW_PARSERS[spec.local_format]
        records = _registry_records(spec, settings)
        items, skipped, skipped_rows = _build(
            name, records, _domain_from_field(spec.name, settings, row_parser, spec)
        )
    else:
        raise ValueError(f"unknown benchmark source {source!r}")
    if source != "synthetic":  # the generator draws its own domains
        items = select_domains(
            name,
            items,
            settings.get("domains"),
            settings.get("per_domain"),
            int(settings.get("per_domain_skip", 0)),
        )
    if settings.get("first"):  # the first N in file order, before any seeded draw
        items = items[: int(settings["first"])]
    items = subsample(items, settings.get("limit"), seed)
    if skipped:
        log.warning("%s: skipped %d rows: %s", name, sum(skipped.values()), dict(skipped))
        for row in skipped_rows[:_LOGGED_ROWS]:
            log.warning("skipped %s", row)
        if len(skipped_rows) > _LOGGED_ROWS:
            log.warning("... and %d more skipped rows", len(skipped_rows) - _LOGGED_ROWS)
    frame = to_frame(items)
    frame.attrs["skipped"] = dict(skipped)
    frame.attrs["skipped_rows"] = skipped_rows
    return frame


_LOGGED_ROWS = 50
