"""Benchmark of the estimator sweep: configurations per second, shared-work sweep vs a naive
per-config reload-and-refit loop, and the projected time of the paper's full grid.

    .venv/bin/python bench/sweep.py [--groups 8] [--jobs 2] [--rows 1000] [--search halving]

The feature table is synthetic and shaped like the paper's (10 slices, ~1000 rows each). All
runs evaluate the same random sample of fit groups (a calibrated + an uncalibrated config each).
The naive loop is the original's: per config, reload every feature file, grid-search, fit and
compute the baselines. The sweep loads once, grid-searches once per fit group and computes the
baselines once per composition. Naive and sweep alternate group by group in one process, so a
change in machine load hits both alike; the sweep is then also run in ``--jobs`` worker
processes (a separate, later measurement). The paper grid projection assumes chunks spread
over 16 cores at the 1-process rate. ``--search halving`` runs the sweep with successive
halving (config ``sweep.search``); the naive loop always grid-searches, as the original did.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from entropy_sentinel.evaluate import sweep as sw
from entropy_sentinel.features.simulate import synthetic_features

PAPER_GRID = 9 * 385 * 48


def naive_group(paths: list[Path], group: list[sw.SweepConfig]) -> float:
    """The original's loop on one fit group: per config, reload every feature file and refit
    from scratch (its own grid search and baselines)."""
    start = time.perf_counter()
    for cfg in group:
        data = sw.SweepData.from_frame(sw.load_features(paths), "benchmark")
        sw.run_group(data, [dataclasses.replace(cfg, search="grid")])
    return time.perf_counter() - start


def sweep_group(data: sw.SweepData, group: list[sw.SweepConfig], baselines: dict) -> float:
    """The sweep on one fit group: one grid search, baselines once per composition."""
    start = time.perf_counter()
    if group[0].slices not in baselines:
        baselines[group[0].slices] = sw.composition_baselines(data, group[0].slices)
    sw.run_group(data, group, baselines=baselines[group[0].slices])
    return time.perf_counter() - start


def _warm() -> None:
    import sklearn.ensemble  # noqa: F401


def start_workers(jobs: int) -> float:
    """Start the reusable loky workers once; a real chunk amortises this over ~2,000 configs."""
    from joblib import Parallel, delayed

    start = time.perf_counter()
    if jobs > 1:
        Parallel(n_jobs=jobs, backend="loky")(delayed(_warm)() for _ in range(jobs))
    return time.perf_counter() - start


def shared(paths: list[Path], configs: list[sw.SweepConfig], jobs: int, parts: Path) -> float:
    """The sweep: load once, one grid search per fit group, loky workers."""
    start = time.perf_counter()
    data = sw.SweepData.from_frame(sw.load_features(paths), "benchmark")
    sw.run_chunk(data, configs, parts, n_jobs=jobs)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=8, help="fit groups sampled (2 configs each)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1000, help="rows per slice")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search", choices=["grid", "halving"], default="grid")
    args = ap.parse_args()

    shifts = {f"bench{i}": float(s) for i, s in enumerate(np.linspace(-2.0, 1.5, 10))}
    table = synthetic_features(shifts, n_per_slice=args.rows, seed=args.seed, slice_by="benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for name, g in table.groupby("benchmark"):
            paths.append(tmp / f"{name}.parquet")
            g.to_parquet(paths[-1])
        configs = sw.sweep_configs("bench", sorted(shifts), {"search": args.search})
        groups = sw.fit_groups(configs)
        pick = np.random.default_rng(args.seed).choice(len(groups), args.groups, replace=False)
        sample = [c for i in sorted(pick) for c in groups[i]]

        # naive and sweep alternate group by group, so changes in machine load hit both alike
        start = time.perf_counter()
        data = sw.SweepData.from_frame(sw.load_features(paths), "benchmark")
        t_one, t_naive, baselines = time.perf_counter() - start, 0.0, {}
        for i in sorted(pick):
            t_naive += naive_group(paths, groups[i])
            t_one += sweep_group(data, groups[i], baselines)
        t_start = start_workers(args.jobs)
        t_jobs = shared(paths, sample, args.jobs, tmp / "parts-n")

    rate_naive, rate_one, rate_jobs = (len(sample) / t for t in (t_naive, t_one, t_jobs))
    result = {
        "search": args.search,
        "configs_sampled": len(sample),
        "grid_configs_per_model": len(configs),
        "jobs": args.jobs,
        "worker_startup_seconds": round(t_start, 2),
        "naive_configs_per_s": round(rate_naive, 4),
        "sweep_1_process_configs_per_s": round(rate_one, 4),
        f"sweep_{args.jobs}_processes_configs_per_s": round(rate_jobs, 4),
        "speedup_vs_naive_1_process": round(rate_one / rate_naive, 2),
        f"speedup_vs_naive_{args.jobs}_processes": round(rate_jobs / rate_naive, 2),
        "projected_full_grid_hours_16_cores": round(PAPER_GRID / (16 * rate_one) / 3600, 1),
        "projected_full_grid_hours_16_cores_naive": round(PAPER_GRID / (16 * rate_naive) / 3600, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
