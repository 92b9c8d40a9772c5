"""Snakemake script of rule `sweep_chunk`: one model x one chunk of the estimator sweep."""

from entropy_sentinel.evaluate import sweep
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive

log = log_to(snakemake.log[0], "sweep_chunk", inputs=snakemake.input)
est = snakemake.params.estimator
slice_by = est["slice_by"]
data = sweep.SweepData.from_frame(sweep.load_features(snakemake.input.features), slice_by)
log.info(
    "%s: %d rows, %d slices; dropped %d ungraded, %d empty",
    snakemake.wildcards.model,
    len(data.y),
    len(data.slices),
    data.n_dropped_ungraded,
    data.n_dropped_empty,
)
configs = sweep.sweep_configs(
    snakemake.wildcards.model,
    data.slices,
    snakemake.params.sweep,
    calibration=est["calibration"],
    slice_by=slice_by,
)
chunk = sweep.chunk_configs(configs, int(snakemake.wildcards.chunk), int(snakemake.params.chunks))
log.info("chunk %s: %d of %d configs", snakemake.wildcards.chunk, len(chunk), len(configs))
sweep.run_chunk(
    data,
    chunk,
    snakemake.params.parts,
    n_jobs=snakemake.threads,
    seed=est["seed"],
)
sweep.collect_parts(snakemake.params.parts, snakemake.output[0])
