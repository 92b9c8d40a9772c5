"""The generation stage: one shard of one (model, benchmark) pair, safe to kill at any moment.

Finished items are committed in chunks, each chunk an atomically written Parquet file in a
``.parts`` folder beside the shard. A rerun reads the parts, skips the items already done and
generates only the rest, so a killed job loses at most the chunk in flight. When every item is
done the parts are merged into the shard file (also written atomically) and removed.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import pandas as pd

from .backends import GENERATION_COLUMNS, GenerationSettings
from .benchmarks.prompts import build_messages
from .provenance import frame_fingerprint, library_versions, now, write_parquet

log = logging.getLogger(__name__)


def shard_bounds(n_items: int, shard: int, n_shards: int, shard_size: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of a shard; the last shard takes any overflow."""
    start = shard * shard_size
    stop = n_items if shard == n_shards - 1 else min(n_items, start + shard_size)
    return min(start, n_items), stop


def count_shards(n_items: int, shard_size: int) -> int:
    return max(1, math.ceil(n_items / shard_size))


def shard_items(benchmark: pd.DataFrame, shard: int, n_shards: int, shard_size: int):
    ordered = benchmark.sort_values("item_id", kind="stable").reset_index(drop=True)
    start, stop = shard_bounds(len(ordered), shard, n_shards, shard_size)
    return ordered.iloc[start:stop]


def parts_dir(shard_path: str | Path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f".{shard_path.stem}.parts")


def completed_parts(parts: Path) -> pd.DataFrame:
    """Rows committed by earlier, possibly interrupted, runs of this shard."""
    files = sorted(parts.glob("chunk-*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(GENERATION_COLUMNS))
    done = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return done.drop_duplicates("item_id", keep="first")


def run_shard(
    *,
    backend,
    benchmark: pd.DataFrame,
    shard: int,
    n_shards: int,
    shard_size: int,
    chunk_size: int,
    prompt_style: str,
    output: str | Path,
    provenance: dict,
) -> pd.DataFrame:
    """Generate every item of the shard not yet done, then write the shard file."""
    output = Path(output)
    parts = parts_dir(output)
    parts.mkdir(parents=True, exist_ok=True)
    items = shard_items(benchmark, shard, n_shards, shard_size)
    done = completed_parts(parts)
    todo = items[~items["item_id"].isin(set(done["item_id"]))]
    log.info(
        "shard %d/%d: %d items, %d already done, %d to generate",
        shard + 1,
        n_shards,
        len(items),
        len(done),
        len(todo),
    )
    prompts = {
        row.item_id: backend.render_prompt(build_messages(row.question, prompt_style))
        for row in todo.itertuples()
    }
    next_part = len(list(parts.glob("chunk-*.parquet")))
    pending: list[dict] = []
    generated, started = 0, time.perf_counter()
    for batch in backend.batches(prompts):
        try:
            pending.extend(backend.generate(batch, [prompts[i] for i in batch]))
        except Exception as error:  # one bad batch must not lose the shard's other items
            log.exception("batch of %d items failed; recording them as errors", len(batch))
            pending.extend(_error_row(item_id, error) for item_id in batch)
        if len(pending) >= chunk_size:
            _commit(pending, parts / f"chunk-{next_part:05d}.parquet")
            generated, next_part, pending = generated + len(pending), next_part + 1, []
            _progress(generated, len(todo), started)
    if pending:
        _commit(pending, parts / f"chunk-{next_part:05d}.parquet")
        generated += len(pending)
        _progress(generated, len(todo), started)

    rows = completed_parts(parts)
    rows = rows[rows["item_id"].isin(set(items["item_id"]))]
    rows = rows.set_index("item_id").loc[items["item_id"]].reset_index()
    metadata = {
        **provenance,
        "shard": shard,
        "n_shards": n_shards,
        "dataset_fingerprint": frame_fingerprint(benchmark),
        "versions": library_versions(),
        "written_at": now(),
    }
    write_parquet(rows[list(GENERATION_COLUMNS)], output, metadata)
    shutil.rmtree(parts)
    return rows


def _commit(rows: list[dict], path: Path) -> None:
    write_parquet(pd.DataFrame(rows, columns=list(GENERATION_COLUMNS)), path)


def _error_row(item_id: str, error: Exception) -> dict:
    row = dict.fromkeys(GENERATION_COLUMNS)
    row.update(item_id=item_id, n_tokens=0, finish_reason="error", error=repr(error)[:500])
    return row


def _progress(done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed else 0.0
    eta = (total - done) / rate if rate else float("nan")
    log.info("generated %d/%d items (%.2f items/s, ~%.0fs left)", done, total, rate, eta)


def settings_provenance(model_manifest: dict, settings: GenerationSettings, backend) -> dict:
    return {
        "model": model_manifest["name"],
        "model_revision": model_manifest.get("revision"),
        "model_source": model_manifest.get("source"),
        "generation_settings": settings.to_dict(),
        **backend.provenance(),
    }
