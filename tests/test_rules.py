"""Every rule is measured and logged; the summary reports where a run's time and memory went."""

from __future__ import annotations

import re
from pathlib import Path

from entropy_sentinel.report.render import resource_usage_markdown

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))

# The columns Snakemake's `benchmark:` directive writes (snakemake.benchmark.BenchmarkRecord).
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in RULE_FILES:
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", path.read_text(), re.M):
            blocks[name] = body
    return blocks


def test_every_rule_has_log_and_benchmark_named_after_it():
    blocks = rule_blocks()
    assert {"generate", "grade", "features", "evaluate", "sweep_chunk"} <= set(blocks)
    for name, body in blocks.items():
        assert "\n    log:\n" in body, name
        benchmark = re.search(r"\n    benchmark:\n        \"(.+)\"", body)
        assert benchmark, f"rule {name} has no benchmark:"
        # resource_usage_markdown names a row by the first part of the path
        assert re.match(rf"timings/{name}(/|\.tsv$)", benchmark.group(1)), name


def write_benchmark(path: Path, seconds: float, rss_mb: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = f"{seconds}\t0:00:{int(seconds):02d}\t{rss_mb}\t900.0\t80.0\t85.0\t1.0\t2.0\t50.0\t3.0\n"
    path.write_text(HEADER + row)


def test_resource_usage_table_per_rule(tmp_path):
    root = tmp_path / "timings"
    write_benchmark(root / "generate" / "m" / "b" / "shard-0.tsv", 30.0, 1500.5)
    write_benchmark(root / "generate" / "m" / "b" / "shard-1.tsv", 12.5, 1700.2)
    write_benchmark(root / "grade" / "m" / "b.tsv", 2.0, 300.0)
    write_benchmark(root / "summary.tsv", 0.5, 90.0)
    lines = resource_usage_markdown(root).splitlines()
    assert lines[0] == "## Where the time and memory went"
    assert lines[4:] == [
        "| generate | 2 | 42.5 | 30.0 | 1700 |",
        "| grade | 1 | 2.0 | 2.0 | 300 |",
        "| summary | 1 | 0.5 | 0.5 | 90 |",
    ]


def test_no_measurements_no_table(tmp_path):
    assert resource_usage_markdown(tmp_path / "timings") == ""


SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


def test_every_script_logs_through_log_to_and_checks_its_inputs():
    """log_to routes warnings and the uncaught traceback into the job's log; with ``inputs``
    it first checks every input file's integrity."""
    assert len(SCRIPTS) >= 12
    for script in SCRIPTS:
        text = script.read_text()
        assert "logging.basicConfig" not in text, script.name
        call = re.search(r"log_to\(snakemake\.log\[0\], \"(\w+)\"(, inputs=.+)?\)", text)
        assert call, f"{script.name} does not log through log_to"
        if script.stem not in ("prepare_benchmark", "fetch_model"):  # rules without input
            assert call.group(2), f"{script.name} does not check its inputs"
