"""The generation cost estimate: token budget over throughput, pending shards only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entropy_sentinel.config.cost import (
    ASSUMED_TOKENS_PER_SECOND,
    estimate,
    format_table,
    pending_cost_report,
)
from entropy_sentinel.config.plan import WorkflowPlan

REPO = Path(__file__).resolve().parents[1]


def config(**models) -> dict:
    return {
        "models": models or {"m": {"source": "local", "path": "x", "tokens_per_second": 1000}},
        "benchmarks": {
            "a": {"source": "registry", "name": "gsm8k", "expected_items": 1200},
            "b": {"source": "registry", "name": "svamp", "expected_items": 300},
        },
        "generation": {"backend": "vllm", "shard_size": 500, "settings": {"max_new_tokens": 3000}},
        "split": {},
        "estimator": {"slice_by": "benchmark", "train_slices": ["a"]},
    }


def test_gpu_hours_are_items_times_budget_over_throughput():
    cfg = config()
    (cost,) = estimate(cfg, WorkflowPlan(cfg))
    assert (cost.items, cost.shards, cost.pending_shards) == (1500, 4, 4)
    assert cost.tokens == 1500 * 3000
    assert cost.gpu_hours == pytest.approx(1500 * 3000 / 1000 / 3600)
    assert cost.pending_gpu_hours == cost.gpu_hours and not cost.assumed


def test_finished_shards_are_not_pending():
    cfg = config()
    done = {("m", "a", 2), ("m", "b", 0)}  # a: 500 + 700 (last shard takes the overflow)
    (cost,) = estimate(cfg, WorkflowPlan(cfg), lambda *key: key in done)
    assert cost.pending_shards == 2 and cost.pending_items == 1000
    assert cost.pending_gpu_hours == pytest.approx(1000 * 3000 / 1000 / 3600)


def test_missing_throughput_is_assumed_and_flagged():
    cfg = config(m={"source": "local", "path": "x"})
    (cost,) = estimate(cfg, WorkflowPlan(cfg))
    assert cost.assumed and cost.tokens_per_second == ASSUMED_TOKENS_PER_SECOND["vllm"]
    table = format_table([cost])
    assert "*" in table and "tokens_per_second" in table


def test_paper_grid_table():
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    costs = estimate(paper, WorkflowPlan(paper))
    assert [c.model for c in costs] == list(paper["models"])
    assert all(c.items == 11569 and c.shards == 27 for c in costs)
    table = format_table(costs)
    assert table.splitlines()[1].split()[:2] == ["model", "items"]
    assert len(table.splitlines()) == 2 + len(costs) + 1


def test_report_only_while_shards_are_pending(tmp_path):
    cfg = config()
    plan = WorkflowPlan(cfg)
    assert "GPU-h" in pending_cost_report(cfg, plan, tmp_path)
    for benchmark in ("a", "b"):
        for shard in range(plan.n_shards(benchmark)):
            path = tmp_path / f"results/generations/m/{benchmark}/shard-{shard}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    assert pending_cost_report(cfg, plan, tmp_path) == ""
