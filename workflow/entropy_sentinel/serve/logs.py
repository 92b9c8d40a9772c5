"""Traffic logs: per-token log-probabilities of served responses, read line by line.

A log is a JSONL file of OpenAI-compatible responses (chat completions, llama-server's
completions, or legacy completions), each either a whole line or under ``response_field`` of a
log record that also carries the slice key and a time, or the project's generation Parquet.

Reading produces ``LogprobBatch``es: one row per usable response (its file line, slice, time
and token count) and the steps of all of them stacked, so features are computed for many
responses at once. ``iter_log`` reads a log in bounded batches (memory stays flat in the log's
size); ``read_log`` reads it whole. Each line is parsed on its own (``orjson``; the standard
library's ``json`` says why a line is not JSON), and a regular llama-server response goes
straight into arrays; other layouts go through ``openai_backend.token_steps``, the backend's
own parser. Line numbers are the file's and a bad line costs only itself: a torn last line,
invalid UTF-8, text that is not JSON, an error body (its message kept), empty ``choices``, no
log-probs, no tokens, malformed log-probs, fewer than ``k`` top log-probs, and (when a time is
required) a missing or garbled time are each counted under their own reason, with the first
few ``file:line`` of each.

``TrafficError`` refuses what the estimator cannot honestly score, naming the problem, where
and the fix: log-probs of the other kind (raw vs processed), a slice or time field that no
record has, and a log with nothing left to score.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from entropy_sentinel.estimate.regime import settings_from_generation, settings_from_request
from entropy_sentinel.generate.backends.openai_backend import token_steps

EXAMPLES = 5  # file:line examples kept per skip reason
NARROW = "fewer top log-probs than k"


class TrafficError(ValueError):
    """A log the estimator cannot honestly score; the message says where and how to fix it."""


@dataclass(kw_only=True)
class Skipped:
    """Records left out: ``skipped`` counts them by reason, ``skipped_at`` holds the first few
    ``file:line: detail`` of each reason."""

    skipped: dict[str, int] = field(default_factory=dict)
    skipped_at: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.skipped_at.setdefault(reason, [])
        if len(examples) < EXAMPLES:
            examples.append(where)


@dataclass
class LogprobBatch(Skipped):
    """Usable responses of a log: ``meta`` (one row each) and their steps, stacked, and the
    responses left out (``Skipped``).

    ``offsets[i]:offsets[i + 1]`` are response i's rows of ``topk`` (steps × k, descending),
    ``sampled`` and ``in_topk``.
    """

    meta: pd.DataFrame  # id, line, slice, time, n_tokens, finish_reason, response (text)
    offsets: np.ndarray
    topk: np.ndarray
    sampled: np.ndarray
    in_topk: np.ndarray
    logprobs_mode: str | None
    k: int | None

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
    id_field: str | None = None  # the id labels and alerts join on; None: the response's "id"
    request_field: str | None = None  # the logged request body (its generation settings)
    logprobs_mode: str | None = None  # declared by the user: "raw" or "processed"


BATCH_BYTES = 32 << 20  # log text per batch: some sixty real (0.5 MB) responses
BATCH_RESPONSES = 4096  # usable responses per batch: short ones make bounded arrays too


def read_log(
    path: str | Path,
    fmt: LogFormat,
    k: int | None,
    *,
    require_time: bool = False,
    allow_empty: bool = False,
) -> LogprobBatch:
    """Read a whole JSONL traffic log or a generation Parquet into one ``LogprobBatch``.

    ``k``: the top-k width the estimator was trained on (None: the widest in the log). Wider
    responses are cut to the top ``k`` (exactly what a k-wide request returns); narrower ones
    skipped. ``require_time``: skip responses without a readable time (monitoring needs it).
    ``allow_empty``: return an empty batch, rather than refuse a log with nothing to score.
    Large logs: ``iter_log`` reads them in bounded batches.
    """
    (batch,) = iter_log(path, fmt, k, require_time=require_time, batch_bytes=None)
    if not len(batch) and not allow_empty:
        raise TrafficError(nothing_to_score(batch.skipped, batch.skipped_at, [path]))
    return batch


def iter_log(
    path: str | Path,
    fmt: LogFormat,
    k: int | None,
    *,
    require_time: bool = False,
    batch_bytes: int | None = BATCH_BYTES,
    batch_responses: int = BATCH_RESPONSES,
) -> Iterator[LogprobBatch]:
    """A log in bounded batches: each holds the responses of about ``batch_bytes`` of log text
    (None: the whole log) or ``batch_responses`` usable ones, whichever comes first, and the
    skipped counts of its lines. At least one batch, maybe empty, comes out.

    With ``k`` None the first batch that has a usable response fixes it (its widest). A field
    that is in no record of the whole log is refused after the last line.
    """
    path = Path(path)
    if not path.is_file():
        raise TrafficError(f"{path}: no such file")
    if path.suffix == ".parquet":  # the project's own generation rows: one batch
        yield _read_generation_parquet(path, fmt, k)
        return
    fields = {"slice": fmt.slice_field, "time": fmt.time_field, "id": fmt.id_field}
    fields["request"] = fmt.request_field
    found = {kind: dotted is None for kind, dotted in fields.items()}
    seen_keys: dict[str, set] = {kind: set() for kind in fields}
    any_kept = False
    batch, kept, size = _empty_batch(fmt, k), [], 0
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            if batch_bytes is not None and (size >= batch_bytes or len(kept) >= batch_responses):
                batch = _stack_records(batch, kept, path, k)
                k = k or batch.k
                yield batch
                batch, kept, size = _empty_batch(fmt, k), [], 0
            size += len(raw)
            if raw.isspace():
                continue
            try:
                with _gc_paused():
                    record, response, steps, finish, text = _read_line(raw, fmt)
                for kind, dotted in fields.items():
                    if dotted and not found[kind]:
                        found[kind] = _get(record, dotted) is not None
                        if not found[kind] and len(seen_keys[kind]) < 200:
                            seen_keys[kind].update(_keys_beside(record, dotted))
                stamp = _time(
                    _get(record, fmt.time_field) if fmt.time_field else response.get("created")
                )
                if require_time and not isinstance(stamp, float):
                    raise _Skip(*stamp) if stamp else _Skip("no time", _time_name(fmt))
            except _Skip as skip:
                batch.skip(skip.reason, f"{path}:{number}: {skip.detail}")
                continue
            label = _slice_label(_get(record, fmt.slice_field)) if fmt.slice_field else "all"
            when = stamp if isinstance(stamp, float) else math.nan
            rid = _get(record, fmt.id_field) if fmt.id_field else response.get("id")
            settings = _settings(record, response, fmt)
            kept.append((number, label, when, finish, text, _id(rid), settings, steps))
            any_kept = True
    last = _stack_records(batch, kept, path, k)
    for kind, dotted in fields.items():
        if any_kept and not found[kind]:
            flag = f"--{kind}-field"
            raise TrafficError(
                f"{path}: {flag} {dotted!r} is in no record; the records have "
                f"{sorted(seen_keys[kind]) or 'no such fields'}. Point {flag} at one of them"
            )
    yield last


def nothing_to_score(skipped: dict, skipped_at: dict, paths) -> str:
    """Why no response of ``paths`` can be scored: each reason, with its first lines."""
    names = ", ".join(map(str, paths))
    if not any(skipped.values()):
        return f"{names}: the log is empty: no record to score"
    reasons = "; ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
    first = "\n".join(
        f"  {skipped_at[r][0]}" for r, n in skipped.items() if n and skipped_at.get(r)
    )
    return f"{names}: nothing left to score ({reasons}). First of each:\n{first}"


def response_batch(
    responses, k: int | None, logprobs_mode: str | None, source: str = "proxy"
) -> LogprobBatch:
    """A ``LogprobBatch`` of in-memory responses (the proxy's), each ``(response, slice, time,
    id, settings)`` (settings: canonical JSON or None): parsed, checked and stacked as a log's
    lines are; a bad one is counted and skipped."""
    batch = _empty_batch(LogFormat(logprobs_mode=logprobs_mode), k)
    kept = []
    for number, (response, label, when, rid, settings) in enumerate(responses, 1):
        try:
            steps, finish, text = _response_steps(response, response, LogFormat())
        except _Skip as skip:
            batch.skip(skip.reason, f"{source}:{rid}: {skip.detail}")
            continue
        kept.append((number, label, when, finish, text, _id(rid), settings, steps))
    return _stack_records(batch, kept, Path(source), k)


def _empty_batch(fmt: LogFormat, k: int | None) -> LogprobBatch:
    return LogprobBatch(
        pd.DataFrame(), np.zeros(1, np.int64), np.zeros((0, k or 0)), np.zeros(0),
        np.zeros(0, bool), fmt.logprobs_mode, k,
    )  # fmt: skip


@contextmanager
def _gc_paused():
    """A parsed line is tens of thousands of young containers and no cycles: the cyclic
    collector would run hundreds of times per line for nothing (it halves the read speed)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- JSONL


def _get(record, dotted: str | None):
    for part in (dotted or "").split(".") if dotted else ():
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


class _Skip(Exception):  # noqa: N818 - control flow inside iter_log only
    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _settings(record: dict, response: dict, fmt: LogFormat) -> str | None:
    """The generation settings of a record's request body, as canonical JSON (None: no body);
    the response names the model that served it when the body does not."""
    body = _get(record, fmt.request_field) if fmt.request_field else None
    if not isinstance(body, dict):
        return None
    settings = settings_from_request(body)
    settings["model"] = settings["model"] or response.get("model")
    return json.dumps(settings, sort_keys=True)


def _id(value) -> str | None:
    """A record's id as text (numbers and strings alike); None when it has none."""
    return None if value is None or isinstance(value, dict | list) else str(value)


def _read_line(raw: bytes, fmt: LogFormat):
    """A line's record, its response, the response's ``_Steps``, finish reason and text."""
    record = _parse_line(raw)
    response = _get(record, fmt.response_field) if fmt.response_field else record
    steps, finish, text = _response_steps(response, record, fmt)
    return record, response, steps, finish, text


def _parse_line(raw: bytes):
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:  # the standard library says why (or reads NaN, huge ints)
        record = _parse_line_slowly(raw)
    if not isinstance(record, dict):
        raise _Skip("not a JSON object", f"a record is a JSON object, not {type(record).__name__}")
    return record


def _parse_line_slowly(raw: bytes):
    torn = not raw.endswith(b"\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Skip(
            "invalid UTF-8", f"byte {error.start} is not UTF-8 ({raw[error.start :][:4]!r})"
        ) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        if torn:
            raise _Skip("torn last line", f"the last line ends mid-record ({error})") from None
        raise _Skip("not JSON", str(error)[:200]) from None


def _response_steps(response, record: dict, fmt: LogFormat):
    """The steps of a record's response, its finish reason and its text (the answer features
    read it), or ``_Skip`` saying why not."""
    for body in (response, record):
        if isinstance(body, dict) and "error" in body and not body.get("choices"):
            error = body["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise _Skip("error body", f"the server answered with an error: {str(message)[:300]}")
    if not isinstance(response, dict):
        where = f"field {fmt.response_field!r}" if fmt.response_field else "the record"
        raise _Skip("not a response", f"{where} is not an OpenAI response object")
    choices = response.get("choices")
    if not isinstance(choices, list):
        where = f"field {fmt.response_field!r}" if fmt.response_field else "the line itself"
        raise _Skip(
            "not a response",
            f"{where} has no 'choices' list (--response-field names the response in a record)",
        )
    if not choices:
        raise _Skip("empty choices", "'choices' is empty: the response has no completion")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _Skip("malformed logprobs", "choices[0] is not an object")
    try:
        steps = _choice_steps(choice)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        detail = f"{type(error).__name__}: {error}"[:200]
        raise _Skip("malformed logprobs", f"the log-probs cannot be read ({detail})") from None
    if steps is None:
        raise _Skip("no logprobs", "the response carries no log-probs (request logprobs=true)")
    if not len(steps.sampled):
        raise _Skip("no tokens", "the response has no generated tokens")
    finish = choice.get("finish_reason")
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return steps, finish if isinstance(finish, str) else None, text if isinstance(text, str) else ""


_MAX_LOGPROB = 1e-3  # servers round log p = 0 to tiny positives; anything larger is not one


def _check_steps(steps) -> None:
    n = len(steps.tokens)
    if len(steps.sampled_logprobs) != n or len(steps.topk_logprobs) != n:
        raise ValueError(f"{n} tokens but {len(steps.sampled_logprobs)} log-probs")
    for value in steps.sampled_logprobs:
        if not value <= _MAX_LOGPROB:  # NaN fails too
            raise ValueError(f"log-prob {value} is not a log-probability")
    for top in steps.topk_logprobs:
        for value in top:
            if not value <= _MAX_LOGPROB:  # NaN fails too; -inf is padding
                raise ValueError(f"top log-prob {value} is not a log-probability")


@dataclass(frozen=True)
class _Steps:
    """One response's steps as arrays: each step's top log-probs (descending, as wide as its
    narrowest step), the sampled token's log-prob and its rank among the top ones (the width
    when it is not among them)."""

    topk: np.ndarray
    sampled: np.ndarray
    rank: np.ndarray


def _choice_steps(choice: dict) -> _Steps | None:
    """The steps of a choice, or None when it has no log-probs. A regular llama-server chat
    response (every step as wide, sorted, with ids) is read into arrays directly; anything else
    goes through ``token_steps``, the backend's parser, and ``_check_steps``."""
    try:
        fast = _regular_steps(choice)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        fast = None
    if fast is not None:
        return fast
    steps = token_steps(choice)
    if steps is None:
        return None
    _check_steps(steps)
    if not steps.tokens:
        return _Steps(np.zeros((0, 0)), np.zeros(0), np.zeros(0, np.int64))
    narrowest = min(map(len, steps.topk_logprobs))
    topk = np.array([top[:narrowest] for top in steps.topk_logprobs], dtype=np.float64)
    if steps.ids is not None:
        pairs = zip(steps.ids, steps.topk_ids, strict=True)
    else:
        pairs = zip(steps.tokens, steps.topk_tokens, strict=True)
    rank = [top.index(chosen) if chosen in top else len(top) for chosen, top in pairs]
    return _Steps(topk, np.asarray(steps.sampled_logprobs, np.float64), np.asarray(rank))


def _regular_steps(choice: dict) -> _Steps | None:
    """The fast path of ``_choice_steps``: None for anything it does not read exactly as
    ``token_steps`` and ``_check_steps`` would (then they decide)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list) or not content:
        return None
    tops = [step["top_logprobs"] for step in content]
    n, width = len(content), len(tops[0])
    if not width or any(len(top) != width for top in tops):
        return None
    entries = [entry for top in tops for entry in top]
    values = np.array([entry["logprob"] for entry in entries])
    sampled = np.array([step["logprob"] for step in content])
    top_ids = np.array([entry["id"] for entry in entries])
    ids = np.array([step["id"] for step in content])
    if values.shape != (n * width,) or sampled.shape != (n,):
        return None
    if top_ids.shape != values.shape or ids.shape != sampled.shape:
        return None
    if any(a.dtype.kind not in "if" for a in (values, sampled)):
        return None
    if any(a.dtype.kind != "i" for a in (top_ids, ids)):  # digit strings: token_steps' int()
        return None
    if not ((values <= _MAX_LOGPROB).all() and (sampled <= _MAX_LOGPROB).all()):
        return None  # NaN too
    topk = values.reshape(n, width).astype(np.float64)
    if (topk[:, 1:] > topk[:, :-1]).any():  # unsorted: token_steps sorts them
        return None
    match = top_ids.reshape(n, width) == ids[:, None]
    rank = np.where(match.any(axis=1), match.argmax(axis=1), width)
    return _Steps(topk, sampled.astype(np.float64), rank)


def _keys_beside(record: dict, dotted: str) -> list[str]:
    """The dotted names at ``dotted``'s level of ``record`` (what the user could have meant)."""
    head, _, _ = dotted.rpartition(".")
    parent = _get(record, head) if head else record
    prefix = f"{head}." if head else ""
    return [prefix + str(key) for key in parent] if isinstance(parent, dict) else []


def _slice_label(value) -> str:
    """Slice keys are text, whatever their JSON type: 3 and "3" are the same slice."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _time_name(fmt: LogFormat) -> str:
    name = fmt.time_field or "created"
    return f"no {name!r} (point --time-field at each record's timestamp)"


_MAX_UNIX_S = 9.2e9  # pandas' nanosecond timestamps end in 2262


def _time(value):
    """Unix seconds (float), None when absent, or (reason, detail) when unreadable."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("garbled time", f"time {value!r} is neither unix seconds nor ISO 8601")
    if isinstance(value, int | float):
        if math.isfinite(value) and abs(value) < _MAX_UNIX_S:
            return float(value)
        return ("garbled time", f"time {value!r} is out of range for unix seconds")
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            return ("garbled time", f"time {value[:60]!r} is neither unix seconds nor ISO 8601")
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        seconds = stamp.timestamp()
        if abs(seconds) < _MAX_UNIX_S:
            return seconds
        return ("garbled time", f"time {value[:60]!r} is out of range")
    return ("garbled time", f"time is a {type(value).__name__}, not unix seconds or ISO 8601")


def _stack_records(batch: LogprobBatch, kept: list, path: Path, k: int | None) -> LogprobBatch:
    """The usable records' steps, cut to the top ``k``, stacked; narrower records skipped."""
    if k is None:  # no estimator to say: the widest the log holds
        k = max((s.topk.shape[1] for *_, s in kept), default=0) or None
    rows, topk, sampled, in_topk, lengths = [], [], [], [], []
    for number, label, when, finish, text, rid, settings, steps in kept:
        narrowest = steps.topk.shape[1]
        if k is None or narrowest < k:
            batch.skip(
                NARROW,
                f"{path}:{number}: a token has {narrowest} top log-probs, but the estimator was "
                f"trained on the top {k}: fewer would understate the entropy. Request "
                f"top_logprobs={k} (vLLM: start it with --max-logprobs {k})",
            )
            continue
        topk.append(steps.topk[:, :k])
        sampled.append(steps.sampled)
        in_topk.append(steps.rank < k)
        lengths.append(len(steps.sampled))
        rows.append((number, label, when, finish, text, rid, settings))
    lines, labels, times, finish, texts, ids, settings = (
        zip(*rows, strict=True) if rows else ((),) * 7
    )
    batch.meta = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype=object),
            "line": np.asarray(lines, dtype=np.int64),
            "slice": np.asarray(labels, dtype=object),
            "time": pd.to_datetime(np.asarray(times, dtype=np.float64), unit="s", utc=True),
            "n_tokens": np.asarray(lengths, dtype=np.int64),
            "finish_reason": pd.Series(finish, dtype=object),
            "response": pd.Series(texts, dtype=object),
            "settings": pd.Series(settings, dtype=object),
        }
    )
    batch.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    batch.topk = np.concatenate(topk) if topk else np.zeros((0, k or 0))
    batch.sampled = np.concatenate(sampled) if sampled else np.zeros(0)
    batch.in_topk = np.concatenate(in_topk) if in_topk else np.zeros(0, bool)
    batch.k = k
    return batch


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
    for dotted in (fmt.slice_field, fmt.time_field, fmt.id_field):
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
            "id": rows.column(fmt.id_field or "item_id").cast(pa.string()).to_pandas(),
            "line": keep + 1,
            "slice": _slice_labels(rows.column(fmt.slice_field), np.arange(n))
            if fmt.slice_field
            else np.full(n, "all", dtype=object),
            "time": _times(rows.column(fmt.time_field), np.arange(n), path, fmt, keep + 1)
            if fmt.time_field
            else pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
            "n_tokens": lengths,
            "finish_reason": rows.column("finish_reason").to_pandas(),
            "response": rows.column("response").to_pandas().fillna("")
            if "response" in names
            else "",
            "settings": _parquet_settings(path),
        }
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return LogprobBatch(
        meta, offsets, topk, sampled, in_topk, fmt.logprobs_mode or mode, k, skipped=skipped
    )


def _parquet_settings(path: Path) -> str | None:
    """The generation settings a generation Parquet's provenance records (canonical JSON)."""
    from entropy_sentinel.provenance import read_provenance

    settings = settings_from_generation(read_provenance(path).get("generation"))
    return None if settings is None else json.dumps(settings, sort_keys=True)
