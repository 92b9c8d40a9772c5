"""Snakemake script of rule `report_figures`: the report's PNG figures of the evaluation."""

import json
from pathlib import Path

import pandas as pd

from entropy_sentinel.estimate.classifier import load_estimator
from entropy_sentinel.evaluate.protocol import prediction_rows
from entropy_sentinel.report import render as reports
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "report_figures", inputs=snakemake.input)
models = list(snakemake.params.models)
inp, out = snakemake.input, snakemake.output
per_slice = {m: pd.read_csv(p) for m, p in zip(models, inp.slices, strict=True)}
metrics = {m: json.loads(Path(p).read_text()) for m, p in zip(models, inp.metrics, strict=True)}
features = pd.concat([pd.read_parquet(p) for p in inp.features], ignore_index=True)

reports.plot_estimates(per_slice, out.estimates)
reports.plot_es_vs_atc(metrics, out.es_vs_atc)
tables, predictions = {}, {}
for model, est_path in zip(models, inp.estimator, strict=True):
    rows = features[features["model"].astype(str) == model]
    tables[model] = reports.feature_auroc_table(rows, snakemake.params.slice_by)
    predictions[model] = prediction_rows(rows, load_estimator(est_path))
reports.plot_feature_auroc(tables, out.feature_auroc)
reports.plot_reliability(predictions, out.reliability)
log.info("wrote %d figures for %d models", len(out), len(models))
