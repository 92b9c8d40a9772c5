rule features:
    """Entropy profiles and the 17 features per response, joined with grades and split.

    The feature spec (definitions, entropy variant, segment, and the rows' k and logprobs mode)
    is stored in the output's provenance, so that an estimator can refuse rows made another way.
    """
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
    benchmark:
        "timings/features/{model}/{benchmark}.tsv"
    group:
        "postprocess"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        spec=config["features"],
    script:
        "../scripts/features.py"
