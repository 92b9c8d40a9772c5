rule features:
    """Entropy profiles and the 17 features per response, joined with grades and split."""
    input:
        shards=generation_files,
        retries=retry_files,
        grades="results/grades/{model}/{benchmark}.parquet",
        benchmark="resources/benchmarks/{benchmark}.parquet",
        split="resources/benchmarks/{benchmark}.split.json",
    output:
        "results/features/{model}/{benchmark}.parquet",
    log:
        "logs/features/{model}/{benchmark}.log",
    group:
        "postprocess"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        entropy=config.get("features", {}).get("entropy", "topk"),
    script:
        "../scripts/features.py"
