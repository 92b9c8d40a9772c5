localrules:
    prepare_benchmark,


rule prepare_benchmark:
    """Normalise a benchmark to one Parquet schema and persist its train/test split."""
    output:
        table="resources/benchmarks/{benchmark}.parquet",
        split="resources/benchmarks/{benchmark}.split.json",
    log:
        "logs/prepare_benchmark/{benchmark}.log",
    benchmark:
        "timings/prepare_benchmark/{benchmark}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        settings=lambda wc: config["benchmarks"][wc.benchmark],
        split=config["split"],
    script:
        "../scripts/prepare_benchmark.py"
