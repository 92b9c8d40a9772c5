rule grade:
    """Grade every response of a (model, benchmark) pair into a separate table."""
    input:
        shards=generation_files,
        retries=retry_files,
        benchmark="resources/benchmarks/{benchmark}.parquet",
    output:
        "results/grades/{model}/{benchmark}.parquet",
    log:
        "logs/grade/{model}/{benchmark}.log",
    benchmark:
        "timings/grade/{model}/{benchmark}.tsv"
    group:
        "postprocess"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        grading=config["grading"],
        # judge verdicts, keyed by response hash: kept across reruns, so none is asked twice
        cache="results/judge-cache/{model}/{benchmark}.jsonl",
    script:
        "../scripts/grade.py"
