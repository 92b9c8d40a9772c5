"""Traffic logs: per-token log-probabilities of served responses, read in bulk.

A log is a JSONL file of OpenAI-compatible responses (chat completions, llama-server's
completions, or legacy completions), each either a whole line or under ``response_field`` of a
log record that also carries the slice key and a time, or the project's generation Parquet.

Reading produces a ``LogprobBatch``: one row per usable response (its slice, time and token
count) and the steps of all of them stacked, so features are computed for every response at
once. Chat and llama-server logs are parsed by Arrow's JSON reader with an explicit schema of
just the needed fields (unknown fields are never materialised); legacy completions, whose
``top_logprobs`` are objects keyed by token text, go through ``json``.

What the estimator cannot honestly score is refused with ``TrafficError`` naming the problem,
the file and line and the fix: fewer than ``k`` top log-probs per token, or log-probs of the
other kind (raw vs processed). Responses without log-probs, with no tokens, or failed
generations are counted and skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class TrafficError(ValueError):
    """A log the estimator cannot honestly score; the message says where and how to fix it."""


@dataclass
class LogprobBatch:
    """Usable responses of a log: ``meta`` (one row each) and their steps, stacked.

    ``offsets[i]:offsets[i + 1]`` are response i's rows of ``topk`` (steps × k, descending),
    ``sampled`` and ``in_topk``. ``skipped`` counts the responses left out, by reason.
    """

    meta: pd.DataFrame  # line, slice, time, n_tokens
    offsets: np.ndarray
    topk: np.ndarray
    sampled: np.ndarray
    in_topk: np.ndarray
    logprobs_mode: str | None
    k: int | None
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.meta)

    def steps(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


@dataclass(frozen=True)
class LogFormat:
    """Where things are in a log record (dotted paths; None: absent)."""

    response_field: str | None = None  # None: each line is the response itself
    slice_field: str | None = None  # None: every response is in slice "all"
    time_field: str | None = None  # unix seconds or ISO 8601; None: the response's "created"
    logprobs_mode: str | None = None  # declared by the user: "raw" or "processed"


def read_log(path: str | Path, fmt: LogFormat, k: int | None) -> LogprobBatch:
    """Read a JSONL traffic log or a generation Parquet into a ``LogprobBatch``.

    ``k``: the top-k width the estimator was trained on (None: take the log's own). Wider logs
    are cut to the top ``k`` (exactly what a k-wide request returns); narrower ones refused.
    """
    path = Path(path)
    if not path.is_file():
        raise TrafficError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return _read_generation_parquet(path, fmt, k)
    first = _first_record(path)
    response = _get(first, fmt.response_field) if fmt.response_field else first
    if not isinstance(response, dict) or "choices" not in response:
        where = f"field {fmt.response_field!r}" if fmt.response_field else "the line itself"
        raise TrafficError(
            f"{path}:1: {where} is not an OpenAI response (no 'choices'); point "
            "--response-field at the response inside each log record"
        )
    choice = (response.get("choices") or [{}])[0]
    legacy = isinstance((choice.get("logprobs") or {}).get("tokens"), list)
    table = _read_python(path, fmt) if legacy else _read_arrow(path, fmt, first)
    return _to_batch(table, path, fmt, k)


# ---------------------------------------------------------------- JSONL


def _first_record(path: Path) -> dict:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TrafficError(f"{path}:{number}: not JSON ({error})") from None
                if not isinstance(record, dict):
                    raise TrafficError(f"{path}:{number}: a log record must be a JSON object")
                return record
    raise TrafficError(f"{path}: the log is empty")


def _get(record, dotted: str | None):
    for part in (dotted or "").split(".") if dotted else ():
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


_TOP = pa.struct([("token", pa.string()), ("logprob", pa.float64()), ("id", pa.int64())])
_STEP = pa.struct(
    [
        ("token", pa.string()),
        ("logprob", pa.float64()),
        ("id", pa.int64()),
        ("top_logprobs", pa.list_(_TOP)),
    ]
)
_CHOICE = pa.struct(
    [("finish_reason", pa.string()), ("logprobs", pa.struct([("content", pa.list_(_STEP))]))]
)
_RESPONSE = [("choices", pa.list_(_CHOICE)), ("created", pa.float64())]


def _field_type(value) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int | float):
        return pa.float64()
    return pa.string()


def _nest(fields: dict, dotted: str, leaf) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        _nest(fields.setdefault(head, {}), rest, leaf)
    elif head not in fields:
        fields[head] = leaf


def _schema(fields: dict) -> list:
    return [
        (name, pa.struct(_schema(value)) if isinstance(value, dict) else value)
        for name, value in fields.items()
    ]


def _read_arrow(path: Path, fmt: LogFormat, first: dict) -> pa.Table:
    import pyarrow.json as pj

    fields: dict = {}
    response = dict(_RESPONSE)
    if fmt.response_field:
        _nest(fields, fmt.response_field, response)
    else:
        fields.update(response)
    for dotted in (fmt.slice_field, fmt.time_field):
        if dotted:
            _nest(fields, dotted, _field_type(_get(first, dotted)))
    schema = pa.schema(_schema(fields))
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(path, parse_options=options, read_options=pj.ReadOptions(1 << 26))
    except pa.ArrowInvalid as error:
        raise TrafficError(f"{path}: cannot read the log as JSONL of responses: {error}") from None
    prefix = fmt.response_field.split(".") if fmt.response_field else []
    response_col = _column(table, prefix) if prefix else table
    choices = _column(response_col, ["choices"])
    choice = pc.list_element(pc.fill_null(choices, pa.scalar([{}], choices.type)), 0)
    return pa.table(
        {
            "slice": _values(table, fmt.slice_field, len(table)),
            "time": _values(table, fmt.time_field, len(table))
            if fmt.time_field
            else _column(response_col, ["created"]),
            "finish_reason": pc.struct_field(choice, "finish_reason"),
            "content": pc.struct_field(pc.struct_field(choice, "logprobs"), "content"),
        }
    )


def _column(table, path: list[str]):
    column = table.column(path[0]) if isinstance(table, pa.Table) else table
    if not isinstance(table, pa.Table):
        column = pc.struct_field(column, path[0])
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    for part in path[1:]:
        column = pc.struct_field(column, part)
    return column


def _values(table: pa.Table, dotted: str | None, n: int):
    if not dotted:
        return pa.nulls(n, pa.string())
    return _column(table, dotted.split("."))


def _read_python(path: Path, fmt: LogFormat) -> pa.Table:
    """Legacy completions (``top_logprobs`` as token -> log-prob objects), line by line."""
    slices, times, finish, content = [], [], [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrafficError(f"{path}:{number}: not JSON ({error})") from None
            response = _get(record, fmt.response_field) if fmt.response_field else record
            choice = ((response or {}).get("choices") or [{}])[0]
            logprobs = choice.get("logprobs") or {}
            steps = None
            if logprobs.get("tokens") is not None:
                steps = [
                    {
                        "token": token,
                        "logprob": lp,
                        "id": None,
                        "top_logprobs": [
                            {"token": t, "logprob": v, "id": None} for t, v in (top or {}).items()
                        ],
                    }
                    for token, lp, top in zip(
                        logprobs["tokens"],
                        logprobs["token_logprobs"],
                        logprobs["top_logprobs"],
                        strict=True,
                    )
                ]
            slices.append(_get(record, fmt.slice_field) if fmt.slice_field else None)
            times.append(_get(record, fmt.time_field or None) if fmt.time_field else None)
            if not fmt.time_field:
                times[-1] = (response or {}).get("created")
            finish.append(choice.get("finish_reason"))
            content.append(steps)
    return pa.table(
        {
            "slice": pa.array([None if s is None else str(s) for s in slices], pa.string()),
            "time": pa.array(times),
            "finish_reason": pa.array(finish, pa.string()),
            "content": pa.array(content, pa.list_(_STEP)),
        }
    )


def _to_batch(table: pa.Table, path: Path, fmt: LogFormat, k: int | None) -> LogprobBatch:
    content = table.column("content").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(content), -1).to_numpy(zero_copy_only=False)
    skipped = {
        "no logprobs": int((lengths < 0).sum()),
        "no tokens": int((lengths == 0).sum()),
    }
    keep = np.flatnonzero(lengths > 0)
    lines = keep + 1  # JSONL lines are records; blank lines are rare in logs
    content = content.take(pa.array(keep))
    lengths = lengths[keep]
    steps = pc.list_flatten(content)
    tops = pc.struct_field(steps, "top_logprobs")
    widths = pc.fill_null(pc.list_value_length(tops), 0).to_numpy(zero_copy_only=False)
    k = _check_width(widths, lengths, lines, path, k)
    top_lp = pc.list_flatten(tops)
    top_values = pc.struct_field(top_lp, "logprob").to_numpy(zero_copy_only=False)
    topk, index = _stack(top_values, widths, k)
    sampled = pc.struct_field(steps, "logprob").to_numpy(zero_copy_only=False).astype(np.float64)
    top_tokens = pc.struct_field(top_lp, "token")
    top_ids = pc.struct_field(top_lp, "id")
    in_topk = _sampled_in_topk(steps, top_tokens, top_ids, index)
    meta = pd.DataFrame(
        {
            "line": lines,
            "slice": _slice_labels(table.column("slice"), keep),
            "time": _times(table.column("time"), keep, path, fmt, lines),
            "n_tokens": lengths,
            "finish_reason": table.column("finish_reason").take(pa.array(keep)).to_pandas(),
        }
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return LogprobBatch(
        meta, offsets, topk, sampled, in_topk, fmt.logprobs_mode, k, skipped=skipped
    )


def _stack(values: np.ndarray, widths: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each step's k largest log-probs, descending, and where they are in ``values``."""
    n_steps = len(widths)
    if (widths == k).all():
        index = np.arange(n_steps * k).reshape(n_steps, k)
        topk = values.reshape(n_steps, k).astype(np.float64, copy=False)
    else:  # wider than k somewhere: rank each step's entries, keep the first k
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        step_of = np.repeat(np.arange(n_steps), widths)
        ranked = np.lexsort((-values, step_of))
        index = ranked[starts[:, None] + np.arange(k)[None, :]]
        topk = values[index].astype(np.float64, copy=False)
    order = np.argsort(-topk, axis=1, kind="stable")  # servers need not sort them
    if not (order == np.arange(k)).all():
        topk = np.take_along_axis(topk, order, axis=1)
        index = np.take_along_axis(index, order, axis=1)
    return topk, index


def _check_width(widths, lengths, lines, path: Path, k: int | None) -> int:
    if not len(widths):
        raise TrafficError(f"{path}: no response carries per-token log-probabilities")
    narrowest = int(widths.min())
    need = k if k is not None else int(widths.max())
    if narrowest < need:
        step = int(np.argmax(widths < need))
        record = int(np.searchsorted(np.cumsum(lengths), step, side="right"))
        raise TrafficError(
            f"{path}:{lines[record]}: a token has {narrowest} top log-probs, but the estimator "
            f"was trained on the top {need}: fewer would understate the entropy. Request "
            f"top_logprobs={need} (vLLM: start it with --max-logprobs {need})"
        )
    return need


def _sampled_in_topk(steps, top_tokens, top_ids, index: np.ndarray) -> np.ndarray:
    """Per step: is the sampled token among its top k? By id where the server gives ids."""
    ids = pc.struct_field(steps, "id")
    if ids.null_count == 0 and top_ids.null_count == 0:
        sampled = ids.to_numpy(zero_copy_only=False)
        tops = top_ids.to_numpy(zero_copy_only=False)[index]
        return (tops == sampled[:, None]).any(axis=1)
    sampled = np.asarray(pc.struct_field(steps, "token").to_numpy(zero_copy_only=False))
    tops = np.asarray(top_tokens.to_numpy(zero_copy_only=False))[index]
    return (tops == sampled[:, None]).any(axis=1)


def _slice_labels(column, keep) -> np.ndarray:
    values = column.take(pa.array(keep))
    if pa.types.is_null(values.type) or values.null_count == len(values):
        return np.full(len(keep), "all", dtype=object)
    labels = pc.cast(values, pa.string()) if not pa.types.is_string(values.type) else values
    return np.asarray(pc.fill_null(labels, "(none)").to_numpy(zero_copy_only=False), dtype=object)


def _times(column, keep, path: Path, fmt: LogFormat, lines) -> pd.Series:
    values = column.take(pa.array(keep)).to_pandas()
    if values.isna().all():
        return pd.Series(pd.NaT, index=range(len(keep)), dtype="datetime64[ns, UTC]")
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values, unit="s", utc=True)
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        field_name = fmt.time_field or "created"
        raise TrafficError(
            f"{path}: field {field_name!r} is neither unix seconds nor ISO 8601 ({error}); "
            "point --time-field at the record's timestamp"
        ) from None


# ---------------------------------------------------------------- generation Parquet


def _read_generation_parquet(path: Path, fmt: LogFormat, k: int | None) -> LogprobBatch:
    """The project's generation rows; the slice key and time are columns of it."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    if "topk_logprobs" not in names:
        raise TrafficError(f"{path}: not a generation Parquet (no topk_logprobs column)")
    for dotted in (fmt.slice_field, fmt.time_field):
        if dotted and dotted not in names:
            raise TrafficError(f"{path}: no column {dotted!r}; columns: {names}")
    modes = set(pc.unique(table.column("logprobs_mode")).drop_null().to_pylist())
    if len(modes) > 1:
        raise TrafficError(f"{path}: rows mix logprobs modes {sorted(modes)}")
    mode = next(iter(modes), None)
    if fmt.logprobs_mode and mode and fmt.logprobs_mode != mode:
        raise TrafficError(
            f"{path}: --logprobs-mode says {fmt.logprobs_mode!r} but the rows record {mode!r}"
        )
    failed = table.column("error").is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(table.column("topk_logprobs")), 0)
    lengths = lengths.to_numpy(zero_copy_only=False)
    skipped = {
        "generation errors": int(failed.sum()),
        "no tokens": int((~failed & (lengths == 0)).sum()),
    }
    keep = np.flatnonzero(~failed & (lengths > 0))
    rows = table.take(pa.array(keep))
    lengths = lengths[keep]
    steps = pc.list_flatten(rows.column("topk_logprobs").combine_chunks())
    widths = pc.list_value_length(steps).to_numpy(zero_copy_only=False)
    k = _check_width(widths, lengths, keep + 1, path, k)
    topk, index = _stack(pc.list_flatten(steps).to_numpy(zero_copy_only=False), widths, k)
    flat = lambda name: pc.list_flatten(rows.column(name).combine_chunks())  # noqa: E731
    sampled = flat("sampled_logprobs").to_numpy(zero_copy_only=False).astype(np.float64)
    if (widths == k).all():
        in_topk = flat("sampled_in_topk").to_numpy(zero_copy_only=False).astype(bool)
    else:  # cut to k: recompute from the ids
        top_ids = pc.list_flatten(flat("topk_token_ids")).to_numpy(zero_copy_only=False)
        token_ids = flat("token_ids").to_numpy(zero_copy_only=False)
        in_topk = (top_ids[index] == token_ids[:, None]).any(axis=1)
    n = len(keep)
    meta = pd.DataFrame(
        {
            "line": keep + 1,
            "item_id": rows.column("item_id").to_pandas(),
            "slice": _slice_labels(rows.column(fmt.slice_field), np.arange(n))
            if fmt.slice_field
            else np.full(n, "all", dtype=object),
            "time": _times(rows.column(fmt.time_field), np.arange(n), path, fmt, keep + 1)
            if fmt.time_field
            else pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
            "n_tokens": lengths,
            "finish_reason": rows.column("finish_reason").to_pandas(),
        }
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return LogprobBatch(
        meta, offsets, topk, sampled, in_topk, fmt.logprobs_mode or mode, k, skipped
    )
