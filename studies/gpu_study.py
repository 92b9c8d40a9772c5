"""The GPU study, in three steps (driven by studies/gpu_study.sh):

prepare (here):   the benchmark tables (every item of the ten), the model GGUF cut into chunks
                  of at most 60 MiB and the `gguf` wheel, under build/gpu-study/ (each transfer
                  to the GPU machine carries at most 64 MiB).
generate (GPU):   reassemble and check the GGUF, dequantise it once, generate every item with
                  the transformers backend in bf16 (paper settings: T=0.5, top-20 raw log-probs,
                  raw question, seed 42), compute the 17 features there and write responses
                  and features (no log-prob arrays) to $OUT; stops cleanly at --deadline-s.
finish (here):    grade the responses, join them with the features and the split, run the
                  held-out estimator study, and write data/studies/<name>.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

CHUNK_BYTES = 60 * 2**20
FEATURE_COLUMNS = ("item_id", "n_tokens", "finish_reason", "error", "response")


def prepare(config_path: str, out: Path, first: int | None) -> None:
    from entropy_sentinel.config.loading import load_config_file, validate_config
    from entropy_sentinel.data import load_benchmark
    from entropy_sentinel.generate.models import assemble_chunks

    config = validate_config(load_config_file(config_path))
    ((name, spec),) = config["models"].items()
    out.mkdir(parents=True, exist_ok=True)
    gguf = Path("resources/models") / name / spec["file"]
    digest, _ = assemble_chunks(name, spec, gguf)
    chunks = out / "model"
    shutil.rmtree(chunks, ignore_errors=True)
    chunks.mkdir()
    with gguf.open("rb") as src:
        for n, block in enumerate(iter(lambda: src.read(CHUNK_BYTES), b"")):
            (chunks / f"part{n:02d}.bin").write_bytes(block)
    (out / "model.json").write_text(
        json.dumps({"name": name, "file": spec["file"], "sha256": digest})
    )
    tables = out / "benchmarks"
    tables.mkdir(exist_ok=True)
    for bench, settings in config["benchmarks"].items():
        settings = {k: v for k, v in settings.items() if k not in ("first", "limit")}
        if first:
            settings["first"] = first
        load_benchmark(bench, settings).to_parquet(tables / f"{bench}.parquet")
    n_chunks, n_tables = len(list(chunks.iterdir())), len(config["benchmarks"])
    print(f"prepared {out}: {n_chunks} model chunks, {n_tables} benchmark tables")


def generate(prepared: Path, out: Path, max_new_tokens: int, batch_size: int, deadline_s: float):
    from entropy_sentinel.data.prompts import build_messages
    from entropy_sentinel.features.compute import FEATURE_NAMES, response_features
    from entropy_sentinel.generate.backends import GenerationSettings, load_backend
    from entropy_sentinel.generate.models import _convert_gguf

    started = time.monotonic()
    model = json.loads((prepared / "model.json").read_text())
    work = Path("/tmp/gpu-study")
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / model["file"]
    digest = hashlib.sha256()
    with gguf.open("wb") as dst:
        for part in sorted((prepared / "model").glob("part*.bin")):
            block = part.read_bytes()
            digest.update(block)
            dst.write(block)
    if digest.hexdigest() != model["sha256"]:
        sys.exit(f"{gguf}: sha256 {digest.hexdigest()} != {model['sha256']}: a chunk is missing")
    weights = work / "weights"
    if not (weights / "model.safetensors").exists():  # a killed conversion leaves no weights
        shutil.rmtree(weights, ignore_errors=True)
        _convert_gguf(gguf, weights)
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=0.5,
        top_k_logprobs=20,
        logprobs_mode="raw",
        seed=42,
        batch_size=batch_size,
        max_batch_tokens=batch_size * (max_new_tokens + 512),
        dtype="auto",  # bfloat16 on a GPU
    )
    backend = load_backend("transformers", str(weights), settings)
    out.mkdir(parents=True, exist_ok=True)
    responses, features, timing = [], [], {}
    for table in sorted((prepared / "benchmarks").glob("*.parquet")):
        bench = table.stem
        items = pd.read_parquet(table)
        prompts = {
            row.item_id: backend.render_prompt(build_messages(row.question, "raw"))
            for row in items.itertuples()
        }
        t0, tokens = time.monotonic(), 0
        for row in backend.stream(prompts):
            values = response_features(row["topk_logprobs"], row["sampled_logprobs"])
            features.append({"item_id": row["item_id"], "benchmark": bench, **values})
            responses.append({"benchmark": bench, **{k: row[k] for k in FEATURE_COLUMNS}})
            tokens += int(row["n_tokens"] or 0)
            if time.monotonic() - started > deadline_s:
                break
        timing[bench] = {"seconds": round(time.monotonic() - t0, 1), "tokens": tokens}
        print(f"{bench}: {timing[bench]}", flush=True)
        if time.monotonic() - started > deadline_s:
            print(f"deadline of {deadline_s} s reached during {bench}", flush=True)
            break
    pd.DataFrame(responses).to_parquet(out / "responses.parquet")
    pd.DataFrame(features, columns=["item_id", "benchmark", *FEATURE_NAMES]).to_parquet(
        out / "features.parquet"
    )
    provenance = {
        "model": model,
        "settings": settings.to_dict(),
        "backend": backend.provenance(),
        "generation_time": timing,
        "wall_s": round(time.monotonic() - started, 1),
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=1, default=str))


def finish(prepared: Path, fetched: Path, config_path: str, out: Path) -> None:
    from entropy_sentinel.config.loading import load_config_file, validate_config
    from entropy_sentinel.config.plan import plan_workflow
    from entropy_sentinel.data import make_split
    from entropy_sentinel.evaluate.protocol import composition_study
    from entropy_sentinel.features.compute import attach_labels
    from entropy_sentinel.grading import grade_table
    from entropy_sentinel.provenance import write_json

    config = validate_config(load_config_file(config_path))
    plan_workflow(config)
    responses = pd.read_parquet(fetched / "responses.parquet")
    feats = pd.read_parquet(fetched / "features.parquet")
    graded, tables = [], []
    for bench, part in responses.groupby("benchmark", sort=False):
        items = pd.read_parquet(prepared / "benchmarks" / f"{bench}.parquet")
        grades = grade_table(part, items).assign(benchmark=bench)
        split = make_split(items["item_id"], strata=items["domain"], **config["split"])
        f = attach_labels(feats[feats["benchmark"] == bench], grades, split)
        f = f.merge(part[["item_id", "n_tokens", "finish_reason"]], on="item_id")
        graded.append(grades)
        tables.append(f.assign(truncated=f["finish_reason"] == "length"))
    out.mkdir(parents=True, exist_ok=True)
    features = pd.concat(tables, ignore_index=True)
    features.to_parquet(out / "features.parquet")
    pd.concat(graded, ignore_index=True).to_parquet(out / "grades.parquet")
    responses.to_parquet(out / "responses.parquet")
    estimator = config["estimator"]
    long, table = composition_study(
        features, "benchmark", estimator, estimator["study_max_train_slices"], n_jobs=2
    )
    table.to_csv(out / "estimators.csv", index=False)
    long.to_csv(out / "study.csv", index=False)
    write_json(
        gpu_study_provenance(json.loads((fetched / "provenance.json").read_text()), config),
        out / "provenance.json",
    )
    print(f"wrote {out}")


def gpu_study_provenance(generated: dict, config: dict) -> dict:
    """The GPU run's provenance in the shape the study export writes and renders."""
    from entropy_sentinel.evaluate.study import study_provenance

    timing = generated["generation_time"]
    model = generated["model"]
    generation = {**config["generation"], "backend": "transformers"}
    return study_provenance(
        model["name"],
        {**config, "generation": {**generation, "settings": generated["settings"]}},
        {
            "source": "pypi_chunks",
            "spec": config["models"][model["name"]],
            "gguf_sha256": model["sha256"],
        },
        generated["backend"],
        timing,
        # one process, benchmark by benchmark; the wall clock adds the GGUF's conversion
        generating_seconds=sum(t["seconds"] for t in timing.values()),
        wall_seconds=generated["wall_s"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--config", default="config/cpu-study.yaml")
    p.add_argument("--out", type=Path, default=Path("build/gpu-study"))
    p.add_argument("--first", type=int, help="only the first N items (a CPU rehearsal)")
    g = sub.add_parser("generate")
    g.add_argument("--prepared", type=Path, default=Path("build/gpu-study"))
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--max-new-tokens", type=int, default=1024)
    g.add_argument("--batch-size", type=int, default=384)
    g.add_argument("--deadline-s", type=float, default=540)
    f = sub.add_parser("finish")
    f.add_argument("--prepared", type=Path, default=Path("build/gpu-study"))
    f.add_argument("--fetched", type=Path, required=True)
    f.add_argument("--config", default="config/cpu-study.yaml")
    f.add_argument("--out", type=Path, default=Path("data/studies/h200-qwen05b"))
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.config, args.out, args.first)
    elif args.step == "generate":
        generate(args.prepared, args.out, args.max_new_tokens, args.batch_size, args.deadline_s)
    else:
        finish(args.prepared, args.fetched, args.config, args.out)


if __name__ == "__main__":
    main()
