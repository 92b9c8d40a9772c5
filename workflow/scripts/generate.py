"""Rules generate and regenerate_truncated: responses with per-token top-k log-probabilities."""

import json
import sys
from pathlib import Path

from entropy_sentinel.generate.backends.openai_backend import ServerUnavailable
from entropy_sentinel.generate.gpu_slots import claim_gpu
from entropy_sentinel.generate.shard import ShardFailed, run_job
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "generate", inputs=snakemake.input)
claim_gpu(log=log)  # before load_backend imports torch: one GPU per job

retry = snakemake.rule == "regenerate_truncated"
try:
    run_job(
        snakemake.params.generation,
        json.loads(Path(snakemake.input.manifest).read_text()),
        snakemake.input.benchmark,
        snakemake.output[0],
        shard=int(snakemake.wildcards.shard),
        n_shards=snakemake.params.get("n_shards", 1),
        prompt_style=snakemake.params.prompt,
        threads=snakemake.threads,
        retry_of=snakemake.input.shard if retry else None,
        max_new_tokens=snakemake.params.max_new_tokens if retry else None,
    )
except (ServerUnavailable, ShardFailed) as error:  # said in full, no traceback
    log.error("%s", error)
    sys.exit(f"generate: {error}")
