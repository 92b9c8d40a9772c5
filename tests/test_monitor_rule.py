"""The monitor: config section and rule: a bad entry fails before any job; a good one is planned.

The rule itself runs end to end in tests/test_llama_server.py, on a log a real server wrote.
"""

from __future__ import annotations

from test_workflow import (
    assert_no_job_was_planned,
    job_counts,
    make_workdir,
    snakemake_dry_run,
    tiny_config,
)


def monitored(tiny_model, tmp_path, **entry) -> dict:
    config = tiny_config(tiny_model)
    log = tmp_path / "traffic.jsonl"
    log.write_text("{}\n")
    config["monitor"] = {"traffic": {"logs": [str(log)], **entry}}
    return config


def test_a_monitor_entry_is_planned_after_the_estimator(tiny_model, tmp_path):
    config = monitored(tiny_model, tmp_path, model="tiny", slice_field="tenant", window="day")
    workdir = make_workdir(tmp_path, config)
    run = snakemake_dry_run(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr
    stats = job_counts(run.stdout)
    assert stats["monitor"] == 1 and stats["evaluate"] == 1
    assert "results/monitor/traffic/monitor.html" in run.stdout


def test_a_bad_monitor_entry_fails_before_any_job(tiny_model, tmp_path):
    workdir = make_workdir(tmp_path / "a", monitored(tiny_model, tmp_path, model="absent"))
    message = r"monitor.traffic.model is 'absent', not one of the models \['tiny'\]"
    assert_no_job_was_planned(workdir, snakemake_dry_run(workdir), message)
    config = monitored(tiny_model, tmp_path, model="tiny", window="week")
    workdir = make_workdir(tmp_path / "b", config)
    assert_no_job_was_planned(workdir, snakemake_dry_run(workdir), "monitor.traffic.window")
