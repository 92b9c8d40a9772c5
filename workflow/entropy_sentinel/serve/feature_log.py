"""The proxy's feature log: one compact JSONL record per response, never its log-probs.

Each file starts with a header line (``{"feature_log": 1, "feature_spec": ..., ...}``) that
says how the features were computed; then one record per scored response::

    {"id", "time" (unix s), "slice", "settings" (the request's generation settings),
     "n_tokens", "finish_reason", "features" {name: value}, "p" (p(correct))}

Files rotate by size (``features-<UTC time>-<n>.jsonl`` in one folder). ``score``, ``monitor``
read them like traffic logs (``score_logs`` recognises the header): the estimator recomputes
p(correct) from the stored features, after checking that its feature spec matches.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.estimate.classifier import feature_names
from entropy_sentinel.features.compute import ANSWER_FEATURES, FEATURE_NAMES
from entropy_sentinel.serve.logs import Skipped, TrafficError, _parse_line, _Skip

VERSION = 1
META_COLUMNS = ("id", "line", "slice", "time", "n_tokens", "finish_reason", "settings")


class FeatureLog:
    """Appends records to ``folder``, a new file once the current one passes ``rotate_bytes``.

    Not thread-safe: one writer (the proxy's scoring worker) at a time."""

    def __init__(self, folder: Path, header: dict, rotate_bytes: int):
        self.folder, self.rotate_bytes = Path(folder), int(rotate_bytes)
        self.header = {"feature_log": VERSION, **header}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []
        self._file = None
        self._size = 0

    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        n = len(self.files)
        path = self.folder / f"features-{stamp}-{n}.jsonl"
        while path.exists():  # another proxy, or a restart within the second
            n += 1
            path = self.folder / f"features-{stamp}-{n}.jsonl"
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across writes
        self.files.append(path)
        self._size = 0
        self._write_line(self.header)

    def _write_line(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
        self._file.write(line)
        self._size += len(line)

    def write(self, records: list[dict]) -> None:
        """Append ``records`` and flush them to the OS (a crash loses none already written)."""
        for record in records:
            if self._file is None or self._size >= self.rotate_bytes:
                self.close()
                self._open()
            self._write_line(record)
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def records(scored: pd.DataFrame, names, settings: list[dict]) -> list[dict]:
    """Feature-log records of ``scored`` (``scoring.score``'s frame); ``settings[i]``: the
    generation settings of the request on line i + 1 of its batch."""
    out = []
    for row in scored.to_dict("records"):
        out.append(
            {
                "id": row["id"],
                "time": row["time"].timestamp() if not pd.isna(row["time"]) else None,
                "slice": row["slice"],
                "settings": settings[int(row["line"]) - 1],
                "n_tokens": int(row["n_tokens"]),
                "finish_reason": row["finish_reason"],
                "features": {name: float(row[name]) for name in names},
                "p": float(row["p_correct"]),
            }
        )
    return out


def is_feature_log(path: str | Path) -> bool:
    """Whether ``path`` is a feature log (its first line is a feature-log header, which
    ``FeatureLog`` writes with ``feature_log`` as its first key)."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, "rb") as lines:
        start = lines.read(64)
    if not start.replace(b" ", b"").startswith(b'{"feature_log":'):
        return False  # any other log, however malformed its first line
    with open(path, "rb") as lines:
        first = lines.readline()
    try:
        return isinstance(head := json.loads(first), dict) and "feature_log" in head
    except (ValueError, RecursionError):
        return False


def read_feature_log(path: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, Skipped]:
    """A feature log's header, its records' meta columns and features (one row each), and its
    bad lines (``Skipped``: counted by reason, with the first ``file:line`` of each)."""
    batch = Skipped()
    rows = []
    header = None
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                record = _parse_line(raw)
                if "feature_log" in record:
                    header = _check_version(record, path, number)
                    continue
                rows.append(_row(record, number))
            except _Skip as skip:
                batch.skip(skip.reason, f"{path}:{number}: {skip.detail}")
    if header is None:
        raise TrafficError(f"{path}: no feature-log header line; is it a proxy feature log?")
    frame = pd.DataFrame(rows, columns=[*META_COLUMNS, "features"])
    features = pd.DataFrame(list(frame.pop("features")), index=frame.index).astype(np.float64)
    frame["time"] = pd.to_datetime(frame["time"].astype(np.float64), unit="s", utc=True)
    return header, frame, features, batch


def score_feature_log(estimator, path: Path) -> tuple[pd.DataFrame, Skipped]:
    """The responses of a feature log, scored as ``scoring.score`` scores a traffic log (the
    meta columns, the features, ``p_correct`` and ``row_estimate``), and its bad lines."""
    header, frame, features, batch = read_feature_log(path)
    try:
        estimator.check_spec(header.get("feature_spec"))
    except ValueError as error:
        raise TrafficError(f"{path}:1: {error}") from None
    names = list(feature_names(estimator.features) or FEATURE_NAMES)
    missing = sorted(set(names) - set(features.columns))
    if len(frame) and missing:
        needs_answer = set(missing) & set(ANSWER_FEATURES)
        raise TrafficError(
            f"{path}: the estimator needs features {missing} that the log does not hold"
            + (" (the answer features: run the proxy with this estimator)" if needs_answer else "")
        )
    features = features.reindex(columns=names)
    defined = np.isfinite(features.to_numpy()).all(axis=1)
    batch.skipped["undefined features"] = int((~defined).sum())
    scored = pd.concat([frame, features], axis=1)[defined].reset_index(drop=True)
    scored["p_correct"] = estimator.p_correct(scored[names]) if len(scored) else []
    scored["row_estimate"] = estimator.row_estimates(scored[names]) if len(scored) else []
    return scored, batch


def _check_version(header: dict, path: Path, number: int) -> dict:
    if header.get("feature_log") != VERSION:
        raise TrafficError(
            f"{path}:{number}: feature log version {header.get('feature_log')!r}; this "
            f"entropy-sentinel reads version {VERSION}"
        )
    return header


def _row(record: dict, number: int) -> tuple:
    features = record.get("features")
    if not isinstance(features, dict):
        raise _Skip("not a feature record", "no 'features' object")
    when = record.get("time")
    if not isinstance(when, int | float) or isinstance(when, bool) or not math.isfinite(when):
        when = math.nan
    values = {}
    for name, value in features.items():
        if value is not None and not isinstance(value, int | float):
            raise _Skip("not a feature record", f"feature {name!r} is {value!r}, not a number")
        values[name] = math.nan if value is None else float(value)
    label, settings = record.get("slice"), record.get("settings")
    return (
        None if record.get("id") is None else str(record["id"]),
        number,
        "(none)" if label is None else str(label),
        when,
        record.get("n_tokens"),
        record.get("finish_reason"),
        json.dumps(settings, sort_keys=True) if isinstance(settings, dict) else None,
        values,
    )
