import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from entropy_sentinel.cost import pending_cost_report  # noqa: E402
from entropy_sentinel.plan import ConfigError, WorkflowPlan, sorted_keys  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
# Snakemake compares params in key order: reordering a config file must not rerun any job.
canonical_config = sorted_keys(config)
config.clear()
config.update(canonical_config)
try:
    PLAN = WorkflowPlan(config)
except ConfigError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None

if workflow.is_main_process and (cost_report := pending_cost_report(config, PLAN)):
    print(cost_report, file=sys.stderr)

MODELS = PLAN.models
BENCHMARKS = PLAN.benchmarks


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    benchmark="|".join(map(re.escape, BENCHMARKS)),
    shard=r"\d+",


def generation_files(wildcards, kind="shard"):
    """The shard-N (or retry-N) files of one (model, benchmark) pair."""
    return [
        f"results/generations/{wildcards.model}/{wildcards.benchmark}/{kind}-{shard}.parquet"
        for shard in range(PLAN.n_shards(wildcards.benchmark))
    ]


def retry_files(wildcards):
    """Regenerated truncated items, when generation.retry_truncated is enabled."""
    if not config["generation"].get("retry_truncated", {}).get("enabled", False):
        return []
    return generation_files(wildcards, kind="retry")


def feature_files(wildcards):
    return expand(
        "results/features/{model}/{benchmark}.parquet",
        model=wildcards.model,
        benchmark=BENCHMARKS,
    )
