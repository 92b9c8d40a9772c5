import re
import sys
from pathlib import Path

# The package comes from this checkout, in this process and in every job's (whatever its conda
# env holds): the envs hold third-party dependencies only, so no job runs a stale copy.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from entropy_sentinel.runtime import import_from  # noqa: E402

import_from(Path(workflow.basedir) / "workflow")
from entropy_sentinel.config.loading import ConfigError, load_config_file  # noqa: E402
from entropy_sentinel.config.cost import pending_cost_report  # noqa: E402
from entropy_sentinel.generate.shard import failed_runs_param  # noqa: E402
from entropy_sentinel.config.plan import plan_workflow  # noqa: E402
from entropy_sentinel.runtime import closing_message, stop_jobs_on_signal  # noqa: E402

DEMO_CONFIG = "config/config.yaml"
CONFIG_FILES = workflow.overwrite_configfiles or [DEMO_CONFIG]
try:
    # Strictly first: Snakemake's YAML loader keeps the last of two duplicate keys silently.
    for config_file in CONFIG_FILES:
        if Path(config_file).exists():
            load_config_file(config_file)
except ConfigError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None

if not workflow.overwrite_configfiles:

    configfile: DEMO_CONFIG


try:
    PLAN = plan_workflow(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
except ConfigError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None

if workflow.is_main_process and (cost_report := pending_cost_report(config, PLAN)):
    print(cost_report, file=sys.stderr)

# Inputs of the default target. Snakemake alone rebuilds a missing intermediate only when a
# consumer reruns anyway, so after an interrupted forced job it reports "Nothing to be done".
MISSING_INTERMEDIATES, MISSING_SHARDS = PLAN.missing_intermediates()
if workflow.is_main_process and MISSING_INTERMEDIATES:
    print(
        f"Rebuilding {len(MISSING_INTERMEDIATES)} missing file(s) whose results exist (an "
        f"interrupted run?), and everything made from them: {', '.join(MISSING_INTERMEDIATES)}",
        file=sys.stderr,
    )
if workflow.is_main_process and MISSING_SHARDS:
    print(
        f"{len(MISSING_SHARDS)} generation shard(s) are missing but their grades exist; kept "
        f"as they are. To generate them again: snakemake --forcerun {' '.join(MISSING_SHARDS)}",
        file=sys.stderr,
    )

# Error rows are work left to do: rule generate's failed_runs parameter reruns such a shard,
# and the rerun sends only its failed items.
PENDING_ERRORS = PLAN.pending_error_files()
if workflow.is_main_process and PENDING_ERRORS:
    print(
        f"{len(PENDING_ERRORS)} generation file(s) hold items that failed; a run sends "
        f"those items again: {', '.join(PENDING_ERRORS)}",
        file=sys.stderr,
    )

MODELS = PLAN.models
BENCHMARKS = PLAN.benchmarks
# What the generate jobs read: retry_truncated only picks which retry jobs run, so editing it
# reruns no generate job (a regenerate job reads its max_new_tokens alone).
GENERATION = {k: v for k, v in config["generation"].items() if k != "retry_truncated"}
RETRY_MAX_NEW_TOKENS = config["generation"]["retry_truncated"]["max_new_tokens"]


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
    retry = config["generation"]["retry_truncated"]
    if not retry["enabled"]:
        return []
    if (
        retry["benchmarks"] is not None
        and wildcards.benchmark not in retry["benchmarks"]
    ):
        return []
    return generation_files(wildcards, kind="retry")


def feature_files(wildcards):
    return expand(
        "results/features/{model}/{benchmark}.parquet",
        model=wildcards.model,
        benchmark=BENCHMARKS,
    )
