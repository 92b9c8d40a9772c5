"""Rule fetch_model: place a model under resources/models and write its manifest."""

from pathlib import Path

from entropy_sentinel.generate.models import fetch_model
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "fetch_model", inputs=snakemake.input)

manifest = fetch_model(
    snakemake.wildcards.model,
    dict(snakemake.params.spec),
    Path(snakemake.output.manifest).parent,
)
log.info(
    "model %s ready at %s (%s)", manifest["name"], manifest["weights_dir"], manifest["revision"]
)
