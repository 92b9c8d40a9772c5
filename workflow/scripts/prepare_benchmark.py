"""Rule prepare_benchmark: normalise one benchmark and persist its train/test split."""

from entropy_sentinel.data import load_benchmark, make_split
from entropy_sentinel.provenance import frame_fingerprint, now, write_json, write_parquet
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "prepare_benchmark")

name = snakemake.wildcards.benchmark
settings = dict(snakemake.params.settings)
table = load_benchmark(name, settings)
if table.empty:
    raise SystemExit(f"benchmark {name}: no usable items (check its source settings)")
fingerprint = frame_fingerprint(table)
log.info("%s: %d items, fingerprint %s", name, len(table), fingerprint)
provenance = {
    "benchmark": name,
    "settings": settings,
    "fingerprint": fingerprint,
    "skipped": table.attrs.get("skipped", {}),
    "skipped_rows": table.attrs.get("skipped_rows", []),  # "file:line: reason", one per row
    "written_at": now(),
}
split = make_split(table["item_id"], strata=table["domain"], **snakemake.params.split)
write_json({**split, **snakemake.params.split, "fingerprint": fingerprint}, snakemake.output.split)
write_parquet(table, snakemake.output.table, provenance)
