"""The generation stage: one shard of one (model, benchmark) pair, safe to kill at any moment.

Finished items are committed in chunks, each chunk an atomically written Parquet file (temp
file + rename) in a ``.parts`` folder beside the shard. A rerun reads the parts, skips the items
already done and generates only the rest, so a killed job loses at most the chunk in flight and
never leaves a torn or duplicated row. When every item is done the parts are merged into the
shard file (also written atomically) and removed. Parts made with other settings (a killed job,
then an edited config) are discarded, not mixed in: the parts folder records what made them.

A finished shard is also hard-linked into ``.store/`` beside it, under a digest of what made it
(model, backend, settings, data fingerprint, prompt style, item ids). Snakemake deletes a job's
output before rerunning it, so an upstream rerun that changes nothing that matters (a benchmark
table rebuilt with the same content) would otherwise throw the generation away; with the store
it is linked back instead of generated again. The store holds one entry per shard: no extra disk.

Error rows are work left to do, never a result. A shard with some failed items is written (the
rest of the workflow runs on its good rows) but not stored, and its parts are kept, so the next
run of the shard sends only the failed items again (the Snakefile forces that run; see
``pending_errors``). A shard whose items all failed is not written: its job fails.

Truncated items (``finish_reason == "length"``) are kept and flagged; ``run_retry`` regenerates
just those with a larger budget into a separate file keyed by ``item_id``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from entropy_sentinel.data.prompts import build_messages
from entropy_sentinel.generate.backends import GENERATION_COLUMNS, GenerationSettings
from entropy_sentinel.integrity import CorruptInputError, check_file
from entropy_sentinel.provenance import (
    atomic_path,
    frame_fingerprint,
    library_versions,
    now,
    write_parquet,
)

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


def _part_files(parts: Path) -> list[Path]:
    return sorted(p for p in parts.glob("chunk-*.parquet") if re.fullmatch(r"chunk-\d+", p.stem))


def completed_parts(parts: Path) -> pd.DataFrame:
    """Rows committed by earlier, possibly interrupted, runs.

    One row per item: the first committed success, else the last committed error.
    """
    files = _part_files(parts)
    frames = []
    for file in files:
        try:
            check_file(file)
        except CorruptInputError as error:  # lose only this chunk: its items are generated again
            log.warning("%s; removing it, its items will be generated again", error)
            file.unlink()
            continue
        frames.append(pd.read_parquet(file))
    if not frames:
        return pd.DataFrame(columns=list(GENERATION_COLUMNS))
    done = pd.concat(
        [f.reindex(columns=list(GENERATION_COLUMNS)) for f in frames], ignore_index=True
    )
    failed = done["error"].notna()
    done = pd.concat([done[~failed], done[failed].iloc[::-1]], ignore_index=True)
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
    items = shard_items(benchmark, shard, n_shards, shard_size)
    run = {"backend": backend, "chunk_size": chunk_size, "prompt_style": prompt_style}
    extra = {"shard": shard, "n_shards": n_shards}
    return _run_for(benchmark, items, provenance, extra, output=output, **run)


def truncated_ids(shard_files: list[str | Path]) -> list[str]:
    """Items that hit the token budget (``finish_reason == "length"``)."""
    frames = [pd.read_parquet(f, columns=["item_id", "finish_reason"]) for f in shard_files]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        return []
    return sorted(rows.loc[rows["finish_reason"] == "length", "item_id"])


def read_generations(shards: list[str], retries: list[str] = ()) -> pd.DataFrame:
    """All rows of a (model, benchmark) pair, with truncated items replaced by their retries."""
    rows = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    if retries:
        rows = prefer_retries(rows, pd.concat([pd.read_parquet(p) for p in retries]))
    return rows


def prefer_retries(rows: pd.DataFrame, retries: pd.DataFrame) -> pd.DataFrame:
    """Shard rows with each successfully retried item replaced by its retry row.

    Adds ``retried`` (bool) and ``first_finish_reason`` (the original row's finish reason).
    """
    rows = rows.assign(retried=False, first_finish_reason=rows["finish_reason"])
    good = retries[retries["error"].isna()].drop_duplicates("item_id")
    if good.empty:
        return rows
    first = rows.set_index("item_id")["finish_reason"]
    good = good.assign(retried=True, first_finish_reason=good["item_id"].map(first))
    kept = rows[~rows["item_id"].isin(set(good["item_id"]))]
    merged = pd.concat([kept, good[rows.columns]], ignore_index=True)
    order = {item_id: n for n, item_id in enumerate(rows["item_id"])}
    return merged.sort_values("item_id", key=lambda c: c.map(order)).reset_index(drop=True)


def run_retry(
    *,
    backend,
    benchmark: pd.DataFrame,
    shard_file: str | Path,
    chunk_size: int,
    prompt_style: str,
    output: str | Path,
    provenance: dict,
) -> pd.DataFrame:
    """Regenerate a shard's truncated items (the backend carries the larger budget)."""
    retry = set(truncated_ids([shard_file]))
    items = benchmark[benchmark["item_id"].isin(retry)].sort_values("item_id", kind="stable")
    run = {"backend": backend, "chunk_size": chunk_size, "prompt_style": prompt_style}
    extra = {"retry_of": str(shard_file)}
    return _run_for(benchmark, items, provenance, extra, output=output, **run)


def _run_for(benchmark, items, provenance: dict, extra: dict, **run) -> pd.DataFrame:
    """run_items on ``items`` of ``benchmark``, its fingerprint in the file's metadata."""
    metadata = {**provenance, **extra, "dataset_fingerprint": frame_fingerprint(benchmark)}
    return run_items(items=items, metadata=metadata, **run)


def run_items(
    *,
    backend,
    items: pd.DataFrame,
    chunk_size: int,
    prompt_style: str,
    output: str | Path,
    metadata: dict,
) -> pd.DataFrame:
    """Generate ``items`` not yet committed in ``output``'s parts, then write ``output``."""
    output = Path(output)
    made_by = _made_by(metadata, prompt_style)
    stored = _stored_path(output, made_by, items["item_id"])
    if _reuse(stored, output):
        return pd.read_parquet(output)
    parts = parts_dir(output)
    parts.mkdir(parents=True, exist_ok=True)
    _discard_stale_parts(parts, made_by)
    files = _part_files(parts)
    done = completed_parts(parts)
    done = done[done["error"].isna()]  # error rows are retried: the cause may be transient
    todo = items[~items["item_id"].isin(set(done["item_id"]))]
    log.info(
        "%s: %d items, %d already done, %d to generate", output, len(items), len(done), len(todo)
    )
    prompts = {
        row.item_id: backend.render_prompt(build_messages(row.question, prompt_style))
        for row in todo.itertuples()
    }
    next_part = int(files[-1].stem.split("-")[1]) + 1 if files else 0
    pending: list[dict] = []
    generated, started = 0, time.perf_counter()
    try:
        for row in backend.stream(prompts):
            pending.append(row)
            if len(pending) >= chunk_size:
                _commit(pending, parts / f"chunk-{next_part:05d}.parquet")
                generated, next_part, pending = generated + len(pending), next_part + 1, []
                _progress(generated, len(todo), started)
    finally:  # keep what finished even when the backend dies; a rerun does the rest
        if pending:
            _commit(pending, parts / f"chunk-{next_part:05d}.parquet")
            generated += len(pending)
            _progress(generated, len(todo), started)

    rows = completed_parts(parts)
    rows = rows[rows["item_id"].isin(set(items["item_id"]))]
    missing = set(items["item_id"]) - set(rows["item_id"])
    if missing:
        raise RuntimeError(f"{len(missing)} items produced no row, e.g. {sorted(missing)[:3]}")
    rows = rows.set_index("item_id").loc[items["item_id"]].reset_index()
    failed = rows[rows["error"].notna()]
    if len(failed) and len(failed) == len(rows):
        raise ShardFailed(
            f"{output}: all {len(rows)} items failed; nothing is written. First error (item "
            f"{failed['item_id'].iloc[0]}): {failed['error'].iloc[0]}. Fix the cause (is the "
            f"server up? generation.openai.base_url?), then rerun: snakemake {output} sends "
            "them again"
        )
    full = {**metadata, "versions": library_versions(), "written_at": now()}
    write_parquet(rows[list(GENERATION_COLUMNS)], output, full)
    if len(failed):  # work left to do: keep the parts, so a rerun sends only the failed items
        _count_failed_run(output)
        log.warning(
            "%s: %d of %d items failed (first, item %s: %s); the shard is written with them as "
            "error rows but not stored, and the next run (or snakemake --forcerun %s) sends "
            "only those items again",
            output,
            len(failed),
            len(rows),
            failed["item_id"].iloc[0],
            failed["error"].iloc[0],
            output,
        )
        return rows
    shutil.rmtree(parts)
    _store(output, stored)
    return rows


class ShardFailed(RuntimeError):
    """Every item of a shard failed: no shard is written, its job fails."""


def pending_errors(output: str | Path) -> bool:
    """Does ``output`` hold error rows still to be retried? (Its parts are kept beside it.)"""
    return Path(output).is_file() and parts_dir(output).is_dir()


def _failed_runs_file(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.stem}.failed-runs")


def _count_failed_run(output: Path) -> None:
    counter = _failed_runs_file(output)
    with atomic_path(counter) as tmp:
        tmp.write_text(str(failed_runs(output) + 1))


def failed_runs(output: str | Path) -> int:
    """How many runs of ``output`` ended with error rows (never reset)."""
    try:
        return int(_failed_runs_file(output).read_text())
    except (OSError, ValueError):
        return 0


def failed_runs_param(output: str | Path):
    """Rule generate's ``failed_runs`` parameter: a new value after each run that left error
    rows, so Snakemake ("params changed") runs that shard again on the next invocation, and
    the same value after a run that retried them all, so it stays done. A shard that never
    had error rows gets a value Snakemake ignores: adding the parameter reruns nothing."""
    from types import SimpleNamespace  # not a builtin type: Snakemake's params ignore it

    count = failed_runs(output)
    return f"runs with failed items: {count}" if count else SimpleNamespace(failed_runs=0)


# What makes a committed row: parts made under other values are generated again.
_RESUME_KEYS = ("model", "model_revision", "backend", "generation_settings", "dataset_fingerprint")


def _made_by(metadata: dict, prompt_style: str) -> dict:
    key = {k: metadata.get(k) for k in _RESUME_KEYS} | {"prompt_style": prompt_style}
    return json.loads(json.dumps(key, sort_keys=True, default=str))


def _stored_path(output: Path, made_by: dict, item_ids) -> Path:
    text = json.dumps({**made_by, "items": sorted(map(str, item_ids))}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return output.parent / ".store" / f"{output.stem}-{digest}.parquet"


def _reuse(stored: Path, output: Path) -> bool:
    """Link a finished generation made the same way back to ``output``, if the store has one."""
    if not stored.exists():
        return False
    try:
        check_file(stored)
    except CorruptInputError as error:
        log.warning("%s; generating again", error)
        stored.unlink()
        return False
    output.unlink(missing_ok=True)
    os.link(stored, output)
    os.utime(output)  # now newer than its inputs, as if just written: no rerun loop
    log.info("%s: reused %s (same model, settings, data and items)", output, stored)
    return True


def _store(output: Path, stored: Path) -> None:
    """Hard-link ``output`` into the store, replacing this shard's older entries."""
    stored.parent.mkdir(exist_ok=True)
    for old in stored.parent.glob(f"{output.stem}-*.parquet"):
        old.unlink()
    try:
        os.link(output, stored)
    except OSError as error:  # a file system without hard links: no store, nothing lost
        log.warning("%s: not kept in %s (%s)", output, stored.parent, error)


def _discard_stale_parts(parts: Path, key: dict) -> None:
    """Keep ``parts`` only if they were made as ``key`` says; record it."""
    made_by = parts / "made_by.json"
    before = json.loads(made_by.read_text()) if made_by.exists() else None
    files = _part_files(parts)
    if files and before != key:
        changed = sorted(k for k in key if (before or {}).get(k) != key[k])
        log.warning(
            "%s: %d committed chunks were made with other %s; they are discarded and their "
            "items generated again",
            parts,
            len(files),
            ", ".join(changed),
        )
        for file in files:
            file.unlink()
    if before != key:
        with atomic_path(made_by) as tmp:
            tmp.write_text(json.dumps(key, sort_keys=True))


def _commit(rows: list[dict], path: Path) -> None:
    write_parquet(pd.DataFrame(rows, columns=list(GENERATION_COLUMNS)), path)


def _progress(done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed else 0.0
    eta = (total - done) / rate if rate else float("nan")
    log.info("generated %d/%d items (%.2f items/s, ~%.0fs left)", done, total, rate, eta)


# models.<name>.generation keys that are GenerationSettings fields as they are.
_MODEL_SETTING_KEYS = ("enable_thinking", "system_prompt", "max_model_len", "dtype")


def model_settings(settings: dict, model_spec: dict) -> tuple[dict, dict]:
    """``generation.settings`` with one model's overrides (``models.<name>.generation``) applied,
    and that model's engine arguments (``engine_args`` plus ``tokenizer_mode``)."""
    overrides = dict(model_spec.get("generation") or {})
    merged = {"trust_remote_code": model_spec.get("trust_remote_code", False), **settings}
    merged.update({k: overrides[k] for k in _MODEL_SETTING_KEYS if k in overrides})
    if "chat_template_kwargs" in overrides:
        extra = dict(merged.get("extra") or {})
        extra["chat_template_kwargs"] = {
            **extra.get("chat_template_kwargs", {}),
            **overrides["chat_template_kwargs"],
        }
        merged["extra"] = extra
    engine_args = dict(model_spec.get("engine_args") or {})
    if "tokenizer_mode" in overrides:
        engine_args["tokenizer_mode"] = overrides["tokenizer_mode"]
    return merged, engine_args


def settings_provenance(model_manifest: dict, settings: GenerationSettings, backend) -> dict:
    return {
        "model": model_manifest["name"],
        "model_revision": model_manifest.get("revision"),
        "model_source": model_manifest.get("source"),
        "generation_settings": settings.to_dict(),
        **backend.provenance(),
    }


def run_job(
    generation: dict,
    manifest: dict,
    benchmark: str | Path,
    output: str | Path,
    *,
    shard: int = 0,
    n_shards: int = 1,
    prompt_style: str = "raw",
    threads: int = 0,
    retry_of: str | Path | None = None,
    max_new_tokens: int | None = None,
) -> None:
    """One generation job as rules generate and regenerate_truncated run it: the model's
    settings merged over ``generation.settings``, its backend built, then one shard (or, with
    ``retry_of``, that shard's truncated items with ``max_new_tokens``) generated."""
    from entropy_sentinel.generate.backends import load_backend

    merged, engine_args = model_settings(generation["settings"], manifest.get("spec", {}))
    if max_new_tokens:
        merged["max_new_tokens"] = max_new_tokens
    settings = GenerationSettings.from_config(merged)
    options = engine_args
    if generation["backend"] == "openai":  # the served model is named after the config's model
        openai = generation["openai"]
        options = {**openai, "model": openai.get("model") or manifest["name"]}
    backend = load_backend(
        generation["backend"], manifest["weights_dir"], settings, threads, options
    )
    common = dict(
        backend=backend,
        benchmark=pd.read_parquet(benchmark),
        chunk_size=generation["chunk_size"],
        prompt_style=prompt_style,
        output=output,
        provenance=settings_provenance(manifest, settings, backend),
    )
    if retry_of:
        run_retry(shard_file=retry_of, **common)
    else:
        run_shard(shard=shard, n_shards=n_shards, shard_size=generation["shard_size"], **common)


def main(argv: list[str] | None = None) -> None:
    """``python -m entropy_sentinel.generate.shard``: one shard (or retry) outside Snakemake."""
    import argparse

    from entropy_sentinel.config.loading import schema_defaults

    defaults = schema_defaults("generation")
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--benchmark", required=True, help="benchmark parquet")
    parser.add_argument("--output", required=True)
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--settings", default="{}", help="GenerationSettings as JSON")
    parser.add_argument("--options", default="{}", help="the openai backend's options as JSON")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--n-shards", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=defaults["shard_size"])
    parser.add_argument("--chunk-size", type=int, default=defaults["chunk_size"])
    parser.add_argument("--prompt", default="raw")
    parser.add_argument("--retry-of", help="a shard file: regenerate its truncated items")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    generation = {
        "backend": args.backend,
        "settings": json.loads(args.settings),
        "openai": json.loads(args.options),
        "shard_size": args.shard_size,
        "chunk_size": args.chunk_size,
    }
    manifest = {"name": Path(args.weights).name, "weights_dir": args.weights}
    run_job(
        generation,
        manifest,
        args.benchmark,
        args.output,
        shard=args.shard,
        n_shards=args.n_shards,
        prompt_style=args.prompt,
        threads=args.threads,
        retry_of=args.retry_of,
    )


if __name__ == "__main__":
    main()
