"""Snakemake script of rule `sweep_merge`: the sweep's result CSVs from all chunks."""

import pandas as pd

from entropy_sentinel import sweep
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "sweep_merge", inputs=snakemake.input)
results = pd.concat([pd.read_parquet(p) for p in snakemake.input], ignore_index=True)
log.info("%d config rows, %d ok", len(results), int((results["status"] == "ok").sum()))
results.to_parquet(snakemake.output.full, index=False)
for name, table in sweep.merge_tables(results).items():
    table.to_csv(snakemake.output[name], index=False)
