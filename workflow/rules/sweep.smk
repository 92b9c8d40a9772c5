# The estimator sweep (reference §5.3), its merged tables and the deployment estimators.
# SWEEP_TARGETS is empty unless config["sweep"]["enabled"]; `rule all` includes it.

SWEEP = config["sweep"]
SWEEP_ENABLED = SWEEP["enabled"]
SWEEP_CHUNKS = SWEEP["chunks"]
# the keys sweep_chunk reads: threads, runtime and deployments do not change its results
SWEEP_GRID = ("classifiers", "calibrate", "balance", "feature_sets", "max_train_slices")
SWEEP_TABLES = {
    "results": "results/sweep/stem_classifier_evaluation_results.csv",
    "aee_per_slice": "results/sweep/aee_per_slice.csv",
    "atc_mae": "results/sweep/atc_mae.csv",
    "atc_summary": "results/sweep/atc_summary.csv",
    "mae_vs_k": "results/sweep/mae_vs_k.csv",
    "best_worst": "results/sweep/best_worst_compositions.csv",
    "rq4_ablation": "results/sweep/rq4_ablation.csv",
}
SWEEP_TARGETS = (
    list(SWEEP_TABLES.values())
    + expand("results/deployments/{model}/manifest.json", model=MODELS)
    if SWEEP_ENABLED
    else []
)


rule sweep_chunk:
    input:
        features=feature_files,
    output:
        "results/sweep/{model}/chunk_{chunk}.parquet",
    log:
        "logs/sweep/{model}/chunk_{chunk}.log",
    benchmark:
        "timings/sweep_chunk/{model}/chunk_{chunk}.tsv"
    wildcard_constraints:
        chunk=r"\d+",
    conda:
        "../../envs/estimate.yaml"
    threads: SWEEP["threads"]
    resources:
        mem_mb=lambda wc, threads: 2000 + 1500 * threads,
        runtime=SWEEP["runtime_min"],
    params:
        sweep={k: SWEEP[k] for k in SWEEP_GRID},
        estimator={
            k: config["estimator"][k] for k in ("slice_by", "calibration", "seed")
        },
        chunks=SWEEP_CHUNKS,
        parts=lambda wc: f"results/sweep/{wc.model}/chunk_{wc.chunk}.parts",
    script:
        "../scripts/sweep_chunk.py"


rule sweep_merge:
    input:
        chunks=expand(
            "results/sweep/{model}/chunk_{chunk}.parquet",
            model=MODELS,
            chunk=range(SWEEP_CHUNKS),
        ),
        studies=expand("results/evaluation/{model}/study.csv", model=MODELS),
    output:
        **SWEEP_TABLES,
        full="results/sweep/sweep_results.parquet",
        estimators="results/sweep/estimators.csv",
    log:
        "logs/sweep/merge.log",
    benchmark:
        "timings/sweep_merge.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        models=MODELS,
    script:
        "../scripts/sweep_merge.py"


rule deployments:
    input:
        features=feature_files,
        sweep="results/sweep/sweep_results.parquet",
    output:
        manifest="results/deployments/{model}/manifest.json",
    log:
        "logs/deployments/{model}.log",
    benchmark:
        "timings/deployments/{model}.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        deployments=SWEEP["deployments"],
        estimator=config["estimator"],
        out_dir=lambda wc: f"results/deployments/{wc.model}",
    script:
        "../scripts/deployments.py"
