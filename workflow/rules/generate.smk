rule generate:
    """Generate one shard with per-token top-k log-probabilities (resumable in chunks)."""
    input:
        manifest="resources/models/{model}/manifest.json",
        benchmark="resources/benchmarks/{benchmark}.parquet",
    output:
        "results/generations/{model}/{benchmark}/shard-{shard}.parquet",
    log:
        "logs/generate/{model}/{benchmark}/shard-{shard}.log",
    benchmark:
        "timings/generate/{model}/{benchmark}/shard-{shard}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        generation=GENERATION,
        n_shards=lambda wc: PLAN.n_shards(wc.benchmark),
        prompt=lambda wc: config["benchmarks"][wc.benchmark].get("prompt", "raw"),
        failed_runs=lambda wc: failed_runs_param(
            f"results/generations/{wc.model}/{wc.benchmark}/shard-{wc.shard}.parquet"
        ),
    script:
        "../scripts/generate.py"


rule regenerate_truncated:
    """Regenerate a shard's truncated items with generation.retry_truncated.max_new_tokens."""
    input:
        manifest="resources/models/{model}/manifest.json",
        benchmark="resources/benchmarks/{benchmark}.parquet",
        shard="results/generations/{model}/{benchmark}/shard-{shard}.parquet",
    output:
        "results/generations/{model}/{benchmark}/retry-{shard}.parquet",
    log:
        "logs/generate/{model}/{benchmark}/retry-{shard}.log",
    benchmark:
        "timings/regenerate_truncated/{model}/{benchmark}/retry-{shard}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        generation=GENERATION,
        max_new_tokens=RETRY_MAX_NEW_TOKENS,
        prompt=lambda wc: config["benchmarks"][wc.benchmark].get("prompt", "raw"),
        failed_runs=lambda wc: failed_runs_param(
            f"results/generations/{wc.model}/{wc.benchmark}/retry-{wc.shard}.parquet"
        ),
    script:
        "../scripts/generate.py"
