"""Integrity of the files a stage reads: a torn file fails at once, named, with the fix.

A job killed mid-write, a full disk or a copy cut short can leave a truncated Parquet, JSON or
zip (skops) file behind. Reading it deep inside a stage gives a bare library error; checking
every input first gives the file and the command that rebuilds it.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq


class CorruptInputError(RuntimeError):
    """An input file that cannot be read; the message names it and the recovery command."""


def recovery_command(path: str | Path) -> str:
    """Rebuild ``path`` and everything made from it (run from the workflow's folder)."""
    return f"snakemake --forcerun {path}"


def check_file(path: str | Path) -> None:
    """Raise ``CorruptInputError`` if ``path`` is empty or cannot be parsed as its type."""
    path = Path(path)
    if not path.is_file():
        return  # a folder or a missing file: Snakemake reports those itself
    problem = _problem(path)
    if problem:
        raise CorruptInputError(
            f"{path} is unreadable ({problem}); an earlier job was probably interrupted or the "
            f"disk filled up. Rebuild it and everything made from it with: "
            f"{recovery_command(path)}"
        )


def check_inputs(paths: Iterable) -> None:
    """``check_file`` on every path (nested lists, e.g. Snakemake's ``input``, included)."""
    for path in _flatten(paths):
        check_file(path)


def _flatten(paths):
    if isinstance(paths, str | Path):
        yield paths
        return
    for item in paths:
        yield from _flatten(item)


def _problem(path: Path) -> str | None:
    if path.stat().st_size == 0:
        return "the file is empty"
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            pq.ParquetFile(path).close()  # reads the footer, which a truncated file lacks
        elif suffix == ".json":
            json.loads(path.read_bytes())
        elif suffix in (".skops", ".zip"):
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged:
                return f"member {damaged} is damaged"
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        return f"{type(error).__name__}: {error}"
    return None
