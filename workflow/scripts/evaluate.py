"""Snakemake script of rule `evaluate`: fit one Entropy Sentinel per model and score every slice."""

import pandas as pd

from entropy_sentinel.evaluation import run_evaluation
from entropy_sentinel.provenance import write_json
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "evaluate", inputs=snakemake.input)

cfg = dict(snakemake.params.estimator)
features = pd.concat([pd.read_parquet(p) for p in snakemake.input.features], ignore_index=True)
log.info("read %d feature rows from %d files", len(features), len(snakemake.input.features))
result = run_evaluation(
    features,
    train_slices=cfg["train_slices"],
    slice_by=cfg.get("slice_by", "benchmark"),
    estimator_config=cfg,
    seed=int(cfg.get("seed", 42)),
    n_boot=int(cfg.get("bootstrap", 1000)),
)
m = result.metrics
log.info("dropped %d ungraded and %d empty rows", m["n_dropped_ungraded"], m["n_dropped_empty"])
log.info("MAE %.4f, Spearman %.3f, ATC[max] MAE %.4f", m["mae"], m["spearman"], m["atc_max_mae"])

result.per_slice.to_csv(snakemake.output.slices, index=False)
write_json(m, snakemake.output.metrics)
result.estimator.save(snakemake.output.estimator)
