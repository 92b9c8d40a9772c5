localrules:
    fetch_model,


rule fetch_model:
    """Place a model under resources/models before any generation job (may use the network)."""
    output:
        manifest="resources/models/{model}/manifest.json",
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "timings/fetch_model/{model}.tsv"
    conda:
        "../../envs/generate.yaml"
    params:
        spec=lambda wc: config["models"][wc.model],
    script:
        "../scripts/fetch_model.py"
