"""Snakemake script of rule `summary`: results/summary.md from the per-model evaluations."""

import json
import logging
from pathlib import Path

import pandas as pd

from entropy_sentinel.reports import summary_markdown

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
models = list(snakemake.params.get("models", [])) or [
    Path(p).parent.name for p in snakemake.input.slices
]
results = {
    model: (pd.read_csv(slices), json.loads(Path(metrics).read_text()))
    for model, slices, metrics in zip(
        models, snakemake.input.slices, snakemake.input.metrics, strict=True
    )
}
Path(snakemake.output[0]).write_text(summary_markdown(results))
logging.info("wrote %s for %d models", snakemake.output[0], len(results))
