"""Rules generate and regenerate_truncated: responses with per-token top-k log-probabilities."""

import json
import sys
from pathlib import Path

import pandas as pd

from entropy_sentinel.generate.backends import GenerationSettings, load_backend
from entropy_sentinel.generate.backends.openai_backend import ServerUnavailable
from entropy_sentinel.generate.gpu_slots import claim_gpu
from entropy_sentinel.generate.shard import (
    ShardFailed,
    model_settings,
    run_retry,
    run_shard,
    settings_provenance,
)
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "generate", inputs=snakemake.input)
claim_gpu(log=log)  # before load_backend imports torch: one GPU per job

generation = snakemake.params.generation
manifest = json.loads(Path(snakemake.input.manifest).read_text())
overrides = {}
retry = snakemake.rule == "regenerate_truncated"
if retry:
    overrides["max_new_tokens"] = snakemake.params.max_new_tokens
merged, engine_args = model_settings(generation["settings"], manifest["spec"])
settings = GenerationSettings.from_config({**merged, **overrides})
if generation["backend"] == "openai":  # the served model is named after the config's model
    options = {"model": manifest["name"], **generation["openai"]}
    options["model"] = options["model"] or manifest["name"]
else:
    options = engine_args
try:
    backend = load_backend(
        generation["backend"], manifest["weights_dir"], settings, snakemake.threads, options
    )
    common = dict(
        backend=backend,
        benchmark=pd.read_parquet(snakemake.input.benchmark),
        chunk_size=generation["chunk_size"],
        prompt_style=snakemake.params.prompt,
        output=snakemake.output[0],
        provenance=settings_provenance(manifest, settings, backend),
    )
    if retry:
        run_retry(shard_file=snakemake.input.shard, **common)
    else:
        run_shard(
            shard=int(snakemake.wildcards.shard),
            n_shards=snakemake.params.n_shards,
            shard_size=generation["shard_size"],
            **common,
        )
except (ServerUnavailable, ShardFailed) as error:  # said in full, no traceback
    log.error("%s", error)
    sys.exit(f"generate: {error}")
