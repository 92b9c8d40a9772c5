"""Snakemake script of rule `summary`: results/summary.md from the per-model evaluations."""

import json
from pathlib import Path

import pandas as pd

from entropy_sentinel.grading.counts import grading_markdown
from entropy_sentinel.report.render import resource_usage_markdown, summary_markdown
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "summary", inputs=snakemake.input)
models = list(snakemake.params.get("models", [])) or [
    Path(p).parent.name for p in snakemake.input.slices
]
results = {
    model: (pd.read_csv(slices), json.loads(Path(metrics).read_text()))
    for model, slices, metrics in zip(
        models, snakemake.input.slices, snakemake.input.metrics, strict=True
    )
}
Path(snakemake.output[0]).write_text(
    summary_markdown(results)
    + "\n"
    + grading_markdown(snakemake.input.grades)
    + "\n"
    + resource_usage_markdown("timings")
)
log.info("wrote %s for %d models", snakemake.output[0], len(results))
