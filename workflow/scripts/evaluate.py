"""Snakemake script of rule `evaluate`: every estimator on the configured training slices, and
the held-out composition study that measures their error, coverage and worth in labels."""

import pandas as pd

from entropy_sentinel.evaluate.protocol import composition_study, run_evaluation
from entropy_sentinel.features.compute import read_feature_spec
from entropy_sentinel.provenance import write_json
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
log = log_to(snakemake.log[0], "evaluate", inputs=snakemake.input)

cfg = dict(snakemake.params.estimator)
paths = list(snakemake.input.features)
features = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
log.info("read %d feature rows from %d files", len(features), len(paths))
result = run_evaluation(
    features,
    cfg["train_slices"],
    cfg["slice_by"],
    cfg,
    feature_spec=read_feature_spec(paths),
    n_jobs=snakemake.threads,
)
m = result.metrics
log.info("dropped %d ungraded and %d empty rows", m["n_dropped_ungraded"], m["n_dropped_empty"])
log.info(
    "%s MAE %.4f, ATC[max] MAE %.4f; selected %s",
    m["deployed"],
    m["mae"],
    m["atc_max_mae"],
    m["selected"],
)
result.per_slice.to_csv(snakemake.output.slices, index=False)
result.estimates.to_csv(snakemake.output.estimates, index=False)
result.estimator.save(snakemake.output.estimator)

log.info("held-out study over compositions of up to %d slices", cfg["study_max_train_slices"])
study, table = composition_study(
    features, cfg["slice_by"], cfg, cfg["study_max_train_slices"], n_jobs=snakemake.threads
)
study.to_csv(snakemake.output.study, index=False)
table.to_csv(snakemake.output.table, index=False)
m["study"] = {
    "max_train_slices": cfg["study_max_train_slices"],
    "n_compositions": int(study["composition"].nunique()) if len(study) else 0,
    "estimators": table.to_dict(orient="records"),
}
write_json(m, snakemake.output.metrics)
