"""Snakemake script of rule `deployments`: Extremes / Intermediate / best estimators of a model."""

import pandas as pd

from entropy_sentinel import sweep
from entropy_sentinel.provenance import write_json
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "deployments", inputs=snakemake.input)
model = snakemake.wildcards.model
est = snakemake.params.estimator
features = sweep.load_features(snakemake.input.features)
best = sweep.best_config(pd.read_parquet(snakemake.input.sweep), model)
if best is None:
    log.info("%s: no successful sweep config; no 'best' estimator", model)
else:
    best["calibration"] = est.get("calibration", "sigmoid")
manifest = sweep.train_deployments(
    features,
    model,
    snakemake.params.deployments,
    est.get("slice_by", "benchmark"),
    snakemake.params.out_dir,
    best=best,
    estimator={"calibration": est.get("calibration", "sigmoid")},
    seed=int(est.get("seed", 42)),
)
write_json(manifest, snakemake.output.manifest)
