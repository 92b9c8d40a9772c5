"""Snakemake script of rule `sweep_merge`: the sweep's result CSVs from all chunks, and every
model's held-out estimator study side by side (all estimators against the baselines)."""

import pandas as pd

from entropy_sentinel.evaluate import sweep
from entropy_sentinel.evaluate.metrics import summarise_estimates
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "sweep_merge", inputs=snakemake.input)
results = pd.concat([pd.read_parquet(p) for p in snakemake.input.chunks], ignore_index=True)
log.info("%d config rows, %d ok", len(results), int((results["status"] == "ok").sum()))
results.to_parquet(snakemake.output.full, index=False)
for name, table in sweep.merge_tables(results).items():
    table.to_csv(snakemake.output[name], index=False)

tables = []
for model, path in zip(snakemake.params.models, snakemake.input.studies, strict=True):
    study = pd.read_csv(path)
    if len(study):
        tables.append(summarise_estimates(study).assign(llm=model))
estimators = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
estimators.to_csv(snakemake.output.estimators, index=False)
