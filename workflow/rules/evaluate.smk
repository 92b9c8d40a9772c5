rule evaluate:
    """Every estimator on the training slices, and the held-out composition study."""
    input:
        features=feature_files,
    output:
        slices="results/evaluation/{model}/slices.csv",
        estimates="results/evaluation/{model}/estimates.csv",
        metrics="results/evaluation/{model}/metrics.json",
        estimator="results/evaluation/{model}/estimator.skops",
        study="results/evaluation/{model}/study.csv",
        table="results/evaluation/{model}/estimators.csv",
    log:
        "logs/evaluate/{model}.log",
    benchmark:
        "timings/evaluate/{model}.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        estimator=config["estimator"],
    script:
        "../scripts/evaluate.py"


rule summary:
    """A short Markdown summary: true and estimated accuracy per slice, per model."""
    input:
        slices=expand("results/evaluation/{model}/slices.csv", model=MODELS),
        metrics=expand("results/evaluation/{model}/metrics.json", model=MODELS),
        grades=expand(
            "results/grades/{model}/{benchmark}.parquet",
            model=MODELS,
            benchmark=BENCHMARKS,
        ),
    output:
        "results/summary.md",
    log:
        "logs/summary.log",
    benchmark:
        "timings/summary.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/summary.py"
