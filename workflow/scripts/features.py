"""Rule features: entropy profiles and the 17 features, joined with grades and split."""

import json
from pathlib import Path

import pandas as pd

from entropy_sentinel.features import feature_table
from entropy_sentinel.generation import read_generations
from entropy_sentinel.provenance import now, read_provenance, write_parquet
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "features")

generations = read_generations(snakemake.input.shards, snakemake.input.retries)
table = feature_table(
    generations,
    pd.read_parquet(snakemake.input.grades),
    pd.read_parquet(snakemake.input.benchmark),
    json.loads(Path(snakemake.input.split).read_text()),
    snakemake.params.entropy,
)
table.insert(1, "model", snakemake.wildcards.model)
log.info("%d feature rows, %d with no tokens", len(table), int((table["n_tokens"] == 0).sum()))
generation_provenance = read_provenance(snakemake.input.shards[0])
write_parquet(
    table,
    snakemake.output[0],
    {"generation": generation_provenance, "entropy": snakemake.params.entropy, "written_at": now()},
)
