"""Rule monitor: score traffic logs per slice and window; alerts go to alerts.json."""

from pathlib import Path

from entropy_sentinel.runtime import log_to
from entropy_sentinel.serve.logs import LogFormat
from entropy_sentinel.serve.monitor import AlertRules, Baseline, alert_lines, run_monitor

snakemake = globals()["snakemake"]
log = log_to(snakemake.log[0], "monitor", inputs=[snakemake.input.estimator])

entry = snakemake.params.monitor
windows, alerts = run_monitor(
    logs=list(snakemake.input.logs),
    estimator_path=snakemake.input.estimator,
    fmt=LogFormat(
        response_field=entry["response_field"],
        slice_field=entry["slice_field"],
        time_field=entry["time_field"],
        id_field=entry["id_field"],
        request_field=entry["request_field"],
        logprobs_mode=entry["logprobs_mode"],
    ),
    window=entry["window"],
    baseline=Baseline.parse(entry["baseline"]),
    rules=AlertRules(entry["min_accuracy"], entry["max_drop"], entry["min_responses"]),
    out_dir=Path(snakemake.output.page).parent,
    under_shift=entry["under_shift"],
)
log.info("%d slice windows, %d alerts", len(windows), len(alerts))
for line in alert_lines(alerts):  # recorded, not fatal: the job's outputs are the alerts
    log.warning(line)
