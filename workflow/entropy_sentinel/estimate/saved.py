"""A saved estimator's metadata, read straight from its .skops file without loading the model.

The metadata travels in the file as one JSON string (``EntropySentinel.save``), so reading it
needs neither skops nor scikit-learn: ``inspect`` answers in a fraction of a second, where
loading the model imports scikit-learn and, through skops' trusted types, every module of it.
Nothing is unpickled or built: only ``schema.json`` of the zip is parsed as JSON.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

FORMAT_VERSION = 3


def unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable estimator file ({type(error).__name__}: {error}); it is "
        "truncated or corrupt. Delete it and rerun the step that wrote it "
        "(e.g. `snakemake --forcerun evaluate`)."
    )


def check_format(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}: retrain it (`snakemake --forcerun evaluate`)"
        )
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``EntropySentinel.metadata()`` stored in ``path`` when it was saved."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
        node = schema["content"]["metadata"]  # a skops JsonNode: the JSON of our JSON string
        meta = json.loads(json.loads(node["content"]))
    except (zipfile.BadZipFile, EOFError, KeyError, TypeError, json.JSONDecodeError) as err:
        if isinstance(err, KeyError | TypeError):
            raise ValueError(f"{path} is not a saved Entropy Sentinel (no metadata)") from None
        raise unreadable(path, err) from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a saved Entropy Sentinel (no metadata)")
    return check_format(meta, path)
