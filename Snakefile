# Entropy Sentinel: label-free LLM accuracy estimation from decoding-entropy traces.
# Stages, one rule file each: benchmarks -> models -> generate -> grade -> features -> evaluate
# -> sweep (optional) -> report.


include: "workflow/rules/common.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/grade.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/monitor.smk"


rule all:
    default_target: True
    input:
        "results/summary.md",
        REPORT_TARGETS,
        SWEEP_TARGETS,
        MONITOR_TARGETS,
        MISSING_INTERMEDIATES,


onstart:
    stop_jobs_on_signal()  # Ctrl-C and SIGTERM stop running jobs too, not only Snakemake


onsuccess:
    print(closing_message(workflow.dag_settings.targets))
