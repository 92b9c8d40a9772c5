"""Rule grade: grade every response of a (model, benchmark) pair into its own table."""

import pandas as pd

from entropy_sentinel.generate.shard import read_generations
from entropy_sentinel.grading import grade_table
from entropy_sentinel.grading.judge import judge_ungraded
from entropy_sentinel.provenance import now, write_parquet
from entropy_sentinel.runtime import log_to

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "grade", inputs=snakemake.input)

generations = read_generations(snakemake.input.shards, snakemake.input.retries)
benchmark = pd.read_parquet(snakemake.input.benchmark)
grades = grade_table(generations, benchmark)
judge = snakemake.params.grading["judge"]
if judge["enabled"]:
    grades, sent = judge_ungraded(grades, generations, benchmark, judge, snakemake.params.cache)
    log.info("%d responses without a rule verdict went to the judge %s", sent, judge["model"])
counts = grades["correct"].value_counts(dropna=False).to_dict()
log.info("graded %d responses: %s", len(grades), counts)
write_parquet(grades, snakemake.output[0], {"graded_at": now()})
