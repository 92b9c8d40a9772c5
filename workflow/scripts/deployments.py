"""Snakemake script of rule `deployments`: the named deployment estimators of a model, with the
paper's design and with the design chosen by the nested protocol."""

import pandas as pd

from entropy_sentinel.evaluate import sweep
from entropy_sentinel.provenance import write_json
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
log = log_to(snakemake.log[0], "deployments", inputs=snakemake.input)

manifest = sweep.train_deployments(
    sweep.load_features(snakemake.input.features),
    snakemake.wildcards.model,
    snakemake.params.deployments,
    snakemake.params.estimator,
    snakemake.params.out_dir,
    results=pd.read_parquet(snakemake.input.sweep),
)
write_json(manifest, snakemake.output.manifest)
