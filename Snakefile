# Entropy Sentinel: label-free LLM accuracy estimation from decoding-entropy traces.
# Stages, one rule file each: benchmarks -> models -> generate -> grade -> features -> evaluate.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/grade.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,


onsuccess:
    print("Entropy Sentinel: summary written to results/summary.md")
