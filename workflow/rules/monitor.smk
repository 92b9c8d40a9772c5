# Traffic monitoring through the DAG: each entry of config["monitor"] scores its log files with
# a trained estimator into results/monitor/{name}/. MONITOR_TARGETS is empty without entries.

MONITORS = config["monitor"]
MONITOR_TARGETS = expand("results/monitor/{name}/monitor.html", name=MONITORS)
for monitor_name, monitor_entry in MONITORS.items():
    if "model" in monitor_entry and monitor_entry["model"] not in MODELS:
        raise WorkflowError(
            f"Invalid configuration: monitor.{monitor_name}.model is "
            f"{monitor_entry['model']!r}, not one of the models {sorted(MODELS)}"
        )


rule monitor:
    """Estimated accuracy per slice and time window, alerts against the baseline, HTML page."""
    input:
        logs=lambda wc: MONITORS[wc.name]["logs"],
        # the entry's estimator file, or the one the workflow trains for its model
        estimator=lambda wc: MONITORS[wc.name].get(
            "estimator",
            f"results/evaluation/{MONITORS[wc.name].get('model')}/estimator.skops",
        ),
    output:
        windows="results/monitor/{name}/windows.csv",
        alerts="results/monitor/{name}/alerts.json",
        summary="results/monitor/{name}/summary.json",
        page="results/monitor/{name}/monitor.html",
    log:
        "logs/monitor/{name}.log",
    benchmark:
        "timings/monitor/{name}.tsv"
    conda:
        "../../envs/estimate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        monitor=lambda wc: MONITORS[wc.name],
    script:
        "../scripts/monitor.py"
