"""Rule features: entropy profiles and the 17 features, joined with grades and split."""

import json
from pathlib import Path

import pandas as pd

from entropy_sentinel.features.compute import PROVENANCE_KEY, FeatureSpec, feature_table
from entropy_sentinel.generate.shard import read_generations
from entropy_sentinel.provenance import now, read_provenance, write_parquet
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "features", inputs=snakemake.input)

generations = read_generations(snakemake.input.shards, snakemake.input.retries)
generation_provenance = read_provenance(snakemake.input.shards[0])
try:
    spec = FeatureSpec.from_dict(snakemake.params.spec).for_rows(generations)
    table = feature_table(
        generations,
        pd.read_parquet(snakemake.input.grades),
        pd.read_parquet(snakemake.input.benchmark),
        json.loads(Path(snakemake.input.split).read_text()),
        spec,
    )
except ValueError as error:
    backend = generation_provenance.get("backend", "unknown")
    where = f"generation backend: {backend}; files: {', '.join(snakemake.input.shards)}"
    raise type(error)(f"{error} [{where}]") from error
table.insert(1, "model", snakemake.wildcards.model)
log.info("feature spec: %s", spec.as_dict())
log.info(
    "%d feature rows, %d with no tokens, %d with none in segment %r",
    len(table),
    int((table["n_tokens"] == 0).sum()),
    int(((table["segment_tokens"] == 0) & (table["n_tokens"] > 0)).sum()),
    spec.segment,
)
write_parquet(
    table,
    snakemake.output[0],
    {
        "generation": generation_provenance,
        PROVENANCE_KEY: spec.as_dict(),
        "written_at": now(),
    },
)
