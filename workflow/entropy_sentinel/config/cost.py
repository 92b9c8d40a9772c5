"""What generation will cost before any job runs: GPU hours per model from the token budget.

The budget is an upper bound: every item generates ``max_new_tokens``. Throughput comes from
``models.<name>.tokens_per_second`` (measure it: a shard's log reports tokens and seconds);
without it a per-backend guess is used and flagged. A shard whose file exists counts as done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entropy_sentinel.generate.shard import shard_bounds

# Rough single-GPU decode throughput with many sequences in flight (7-8B model, H100 class).
ASSUMED_TOKENS_PER_SECOND = {"vllm": 2000.0, "transformers": 150.0}


@dataclass(frozen=True)
class ModelCost:
    model: str
    items: int
    shards: int
    pending_shards: int
    pending_items: int
    max_new_tokens: int
    tokens_per_second: float
    assumed: bool  # tokens_per_second is a guess, not configured
    nominal_items: bool = False  # some item count is the registry's usual size, not configured

    @property
    def tokens(self) -> int:
        return self.items * self.max_new_tokens

    @property
    def gpu_hours(self) -> float:
        return self.tokens / self.tokens_per_second / 3600

    @property
    def pending_gpu_hours(self) -> float:
        return self.pending_items * self.max_new_tokens / self.tokens_per_second / 3600


def estimate(
    config: dict,
    plan,
    shard_done: Callable[[str, str, int], bool] = lambda model, benchmark, shard: False,
) -> list[ModelCost]:
    """One row per model. ``plan`` is a WorkflowPlan (expected_items, n_shards, shard_size)."""
    generation = config["generation"]
    max_new_tokens = int(generation["settings"]["max_new_tokens"])  # a validated config
    assumed_tps = ASSUMED_TOKENS_PER_SECOND.get(generation["backend"], 100.0)
    costs = []
    for model, spec in config["models"].items():
        items = shards = pending_shards = pending_items = 0
        nominal = False
        for benchmark in config["benchmarks"]:
            n_items = plan.expected_items(benchmark)
            if n_items is None:
                n_items = _nominal_items(benchmark, config["benchmarks"][benchmark])
                nominal = nominal or n_items > 0
            n_shards = plan.n_shards(benchmark)
            items += n_items
            shards += n_shards
            for shard in range(n_shards):
                if not shard_done(model, benchmark, shard):
                    pending_shards += 1
                    start, stop = shard_bounds(n_items, shard, n_shards, plan.shard_size)
                    pending_items += stop - start
        tps = spec.get("tokens_per_second")
        costs.append(
            ModelCost(
                model=model,
                items=items,
                shards=shards,
                pending_shards=pending_shards,
                pending_items=pending_items,
                max_new_tokens=max_new_tokens,
                tokens_per_second=float(tps or assumed_tps),
                assumed=tps is None,
                nominal_items=nominal,
            )
        )
    return costs


def _nominal_items(name: str, settings: dict) -> int:
    """A registry benchmark's usual size (capped by first/limit); 0 when unknown."""
    from entropy_sentinel.data.registry import nominal_items

    if settings.get("source") not in ("registry", "hub"):
        return 0
    local = settings.get("source") == "registry" and bool(settings.get("path"))
    count = nominal_items(settings.get("name", name), local) or 0
    caps = [c for c in (settings.get("limit"), settings.get("first")) if c]
    return min([count, *caps]) if count else 0


def format_table(costs: list[ModelCost]) -> str:
    """A plain-text table for the terminal."""
    if not costs:
        return ""
    width = max(len("model"), *(len(c.model) for c in costs))
    header = (
        f"{'model':<{width}}  {'items':>6}  {'shards':>6}  {'pending':>7}  {'Mtok':>7}  "
        f"{'tok/s':>7}  {'GPU-h':>7}  {'pending GPU-h':>13}"
    )
    lines = [
        "Generation cost (upper bound: every item generates "
        f"max_new_tokens={costs[0].max_new_tokens}):",
        header,
    ]
    for c in costs:
        tps = f"{c.tokens_per_second:.0f}{'*' if c.assumed else ' '}"
        lines.append(
            f"{c.model:<{width}}  {c.items:>6}  {c.shards:>6}  {c.pending_shards:>7}  "
            f"{c.tokens / 1e6:>7.1f}  {tps:>7}  {c.gpu_hours:>7.1f}  {c.pending_gpu_hours:>13.1f}"
        )
    total = sum(c.gpu_hours for c in costs)
    pending = sum(c.pending_gpu_hours for c in costs)
    lines.append(
        f"{'total':<{width}}  {'':>6}  {'':>6}  {'':>7}  {'':>7}  {'':>7}  "
        f"{total:>7.1f}  {pending:>13.1f}"
    )
    if any(c.nominal_items for c in costs):
        lines.append(
            "items: a registry benchmark without expected_items counts its usual size; set "
            "benchmarks.<name>.expected_items for an exact count"
        )
    if any(c.assumed for c in costs):
        lines.append(
            "* assumed throughput: measure it and set models.<name>.tokens_per_second in the config"
        )
    return "\n".join(lines)


SHARD_PATH = "results/generations/{model}/{benchmark}/shard-{shard}.parquet"  # rule generate


def pending_cost_report(config: dict, plan, root: str | Path = ".") -> str:
    """The cost table while any shard is still to generate; empty once all are done."""
    root = Path(root)
    costs = estimate(
        config,
        plan,
        lambda model, benchmark, shard: (
            root / SHARD_PATH.format(model=model, benchmark=benchmark, shard=shard)
        ).exists(),
    )
    if not any(c.pending_shards for c in costs):
        return ""
    return format_table(costs)
