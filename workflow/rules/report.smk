# Figures for `snakemake --report`: PNGs marked with report(), captions in workflow/report/.
# REPORT_TARGETS lists them for `rule all`; the sweep figure only when the sweep is enabled.

REPORT_FIGURES = ["estimates", "es_vs_atc", "feature_auroc", "reliability"]
REPORT_TARGETS = expand("results/report/{figure}.png", figure=REPORT_FIGURES)
if config["sweep"]["enabled"]:
    REPORT_TARGETS.append("results/report/mae_vs_k.png")


rule report_figures:
    input:
        slices=expand("results/evaluation/{model}/slices.csv", model=MODELS),
        metrics=expand("results/evaluation/{model}/metrics.json", model=MODELS),
        estimator=expand("results/evaluation/{model}/estimator.skops", model=MODELS),
        features=expand(
            "results/features/{model}/{benchmark}.parquet",
            model=MODELS,
            benchmark=BENCHMARKS,
        ),
    output:
        estimates=report(
            "results/report/estimates.png",
            caption="../report/estimates.rst",
            category="Accuracy estimates",
        ),
        es_vs_atc=report(
            "results/report/es_vs_atc.png",
            caption="../report/es_vs_atc.rst",
            category="Baselines",
        ),
        feature_auroc=report(
            "results/report/feature_auroc.png",
            caption="../report/feature_auroc.rst",
            category="Features",
        ),
        reliability=report(
            "results/report/reliability.png",
            caption="../report/reliability.rst",
            category="Calibration",
        ),
    log:
        "logs/report/figures.log",
    benchmark:
        "timings/report_figures.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=MODELS,
        slice_by=config["estimator"]["slice_by"],
    script:
        "../scripts/report_figures.py"


rule report_sweep_figures:
    input:
        mae_vs_k="results/sweep/mae_vs_k.csv",
    output:
        mae_vs_k=report(
            "results/report/mae_vs_k.png",
            caption="../report/mae_vs_k.rst",
            category="Training composition",
        ),
    log:
        "logs/report/sweep_figures.log",
    benchmark:
        "timings/report_sweep_figures.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report_sweep_figures.py"
