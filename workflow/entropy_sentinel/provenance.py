"""Provenance: what produced an output, recorded next to it."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from entropy_sentinel import __version__

_TRACKED_PACKAGES = ("torch", "transformers", "vllm", "scikit-learn", "math-verify", "pandas")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour shapes the outputs (absent ones omitted)."""
    versions = {"entropy-sentinel": __version__, "python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a table, independent of row order."""
    hashed = pd.util.hash_pandas_object(frame, index=False).sort_values()
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def write_parquet(frame: pd.DataFrame, path: str | Path, metadata: dict | None = None) -> None:
    """Write atomically (temp file + rename) with provenance JSON in the file's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    merged = dict(table.schema.metadata or {})
    merged[b"entropy_sentinel"] = json.dumps(metadata or {}, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_provenance(path: str | Path) -> dict:
    """The provenance JSON stored by ``write_parquet``."""
    raw = (pq.read_schema(path).metadata or {}).get(b"entropy_sentinel", b"{}")
    return json.loads(raw)


def jsonable(obj: Any) -> Any:
    """``obj`` with NaN/inf as None, tuples as lists and numpy scalars as Python ones."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(data: Any, path: str | Path) -> None:
    """Write strict JSON (NaN as null) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary sibling of ``path`` to write; renamed onto ``path`` on success, removed on
    any failure (a full disk, a kill signal turned into an exception), so no debris is left."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
