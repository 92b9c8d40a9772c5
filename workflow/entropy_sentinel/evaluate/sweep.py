"""The estimator sweep (reference §5.3): every training composition of 1..k slices x classifier
x calibration x balancing x feature set, each evaluated on every slice.

Shared work: features are loaded and split once per model, and the grid search of a (composition,
classifier, balance, features) "fit group" is done once for its calibrated and uncalibrated
configs. Chunks are contiguous runs of fit groups, written as Parquet parts (atomic, batched), so
an interrupted chunk resumes by skipping config hashes already written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from entropy_sentinel.config.loading import schema_defaults
from entropy_sentinel.estimate.classifier import (
    EntropySentinel,
    canonical_classifier,
    feature_names,
    grid_search,
    minority_count,
)
from entropy_sentinel.estimate.slice_estimators import (
    ATCFeature,
    AverageConfidence,
    SourceFit,
    TrainAccuracy,
)
from entropy_sentinel.evaluate.metrics import spearman
from entropy_sentinel.evaluate.protocol import (
    clean_features,
    compositions,
    p_metrics,
    protocol_masks,
    run_evaluation,
    slice_labels,
)
from entropy_sentinel.features.compute import FEATURE_NAMES, FEATURE_SETS
from entropy_sentinel.provenance import atomic_path

log = logging.getLogger(__name__)

# The RQ1 "plausible default" of the deployment estimators (reference §5.4)
DEPLOYMENT_ESTIMATOR = {
    "classifier": "random_forest",
    "calibrate": True,
    "balance": True,
    "features": "10D",
}
# the tables of merge_tables, by name
MERGED_TABLES = (
    "results",
    "aee_per_slice",
    "atc_mae",
    "atc_summary",
    "mae_vs_k",
    "best_worst",
    "rq4_ablation",
)
RESULT_COLUMNS = [
    "hash",
    "llm",
    "benchmarks",
    "classifier",
    "calibrate",
    "balance_classes",
    "features",
    "spearman_rho",
    "mae",
]


# ---------------------------------------------------------------- the configuration grid


def n_compositions(n_slices: int, max_k: int) -> int:
    """sum_{k=1..max_k} C(n_slices, k)."""
    return sum(math.comb(n_slices, k) for k in range(1, min(max_k, n_slices) + 1))


@dataclass(frozen=True)
class SweepConfig:
    """One estimator configuration of the sweep."""

    llm: str
    slices: tuple[str, ...]
    classifier: str
    calibrate: bool
    balance: bool
    features: str
    calibration: str = "sigmoid"
    slice_by: str = "benchmark"
    search: str = "grid"  # or "halving" (classifier.grid_search)

    @property
    def fit_key(self) -> tuple:
        """Configs sharing this key share one grid search (they differ only in calibration)."""
        return (self.llm, self.slices, self.classifier, self.balance, self.features, self.search)

    @property
    def hash(self) -> str:
        """sha256 of the config's identity (the original's fields plus slice_by/calibration)."""
        ident = {
            "llm": self.llm,
            "benchmarks": sorted(self.slices),
            "train_suites": [f"{self.llm}-{s}-train" for s in sorted(self.slices)],
            "classifier": self.classifier,
            "calibrate": self.calibrate,
            "balance_classes": self.balance,
            "features": list(FEATURE_SETS[self.features]),
            "calibration": self.calibration,
            "slice_by": self.slice_by,
            **({"search": self.search} if self.search != "grid" else {}),  # grid: hashes as before
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def sweep_configs(
    llm: str,
    slices: Sequence[str],
    sweep: dict[str, Any],
    calibration: str = "sigmoid",
    slice_by: str = "benchmark",
) -> list[SweepConfig]:
    """The full ordered config list of one model; calibrate varies fastest."""
    s = {**schema_defaults("sweep"), **(sweep or {})}
    return [
        SweepConfig(
            llm,
            comp,
            canonical_classifier(c),
            bool(cal),
            bool(bal),
            f,
            calibration,
            slice_by,
            s["search"],
        )
        for comp in compositions(slices, int(s["max_train_slices"]))
        for c in s["classifiers"]
        for bal in s["balance"]
        for f in s["feature_sets"]
        for cal in s["calibrate"]
    ]


def fit_groups(configs: Iterable[SweepConfig]) -> list[list[SweepConfig]]:
    """Consecutive configs grouped by fit_key."""
    return [list(g) for _, g in itertools.groupby(configs, key=lambda c: c.fit_key)]


def chunk_configs(configs: Sequence[SweepConfig], chunk: int, n_chunks: int) -> list[SweepConfig]:
    """Chunk `chunk` of `n_chunks`: a contiguous, deterministic run of whole fit groups."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} outside 0..{n_chunks - 1}")
    groups = fit_groups(configs)
    bounds = np.linspace(0, len(groups), n_chunks + 1).round().astype(int)
    return [c for g in groups[bounds[chunk] : bounds[chunk + 1]] for c in g]


# ---------------------------------------------------------------- data, loaded once per model


@dataclass
class SweepData:
    """One model's cleaned feature rows as arrays."""

    slices: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    code: np.ndarray
    labels: pd.Series
    split: pd.Series
    n_dropped_ungraded: int = 0
    n_dropped_empty: int = 0

    @classmethod
    def from_frame(cls, df: pd.DataFrame, slice_by: str) -> SweepData:
        clean, dropped = clean_features(df)
        labels = slice_labels(clean, slice_by)
        names = tuple(sorted(labels.unique()))
        return cls(
            slices=names,
            X=clean.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float64),
            y=clean["correct"].to_numpy(dtype=bool),
            code=labels.map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.int64),
            labels=labels.reset_index(drop=True),
            split=clean["split"].astype(str).reset_index(drop=True),
            n_dropped_ungraded=dropped.ungraded,
            n_dropped_empty=dropped.empty,
        )

    @property
    def is_train(self) -> np.ndarray:
        return (self.split == "train").to_numpy()

    def masks(self, composition: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, evaluation rows) of the paper's protocol."""
        return protocol_masks(self.labels, self.split, list(composition))

    def frame(self, rows: np.ndarray) -> pd.DataFrame:
        """The feature rows selected by a mask, as named columns."""
        return pd.DataFrame(self.X[rows], columns=list(FEATURE_NAMES))


def load_features(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate feature tables."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


# ---------------------------------------------------------------- evaluating one fit group


def _slice_means(values: np.ndarray, code: np.ndarray, n_slices: int) -> np.ndarray:
    n = np.bincount(code, minlength=n_slices)
    return np.bincount(code, values, n_slices) / np.maximum(n, 1)


def composition_baselines(data: SweepData, composition: Sequence[str]) -> dict[str, float]:
    """MAE of the baselines of accuracy.py on one composition: ATC on each of the 17
    features, the training-set accuracy and average confidence."""
    train, evaluate = data.masks(composition)
    src = SourceFit.labelled(data.frame(train), data.y[train])
    baselines = [ATCFeature(f) for f in FEATURE_NAMES] + [TrainAccuracy(), AverageConfidence()]
    names = [f"atc_{f}_mae" for f in FEATURE_NAMES] + ["trivial_mae", "avg_conf_mae"]
    X_ev, y_ev, code_ev = data.frame(evaluate), data.y[evaluate], data.code[evaluate]
    present = np.flatnonzero(np.bincount(code_ev, minlength=len(data.slices)) > 0)
    true = _slice_means(y_ev, code_ev, len(data.slices))[present]
    per_slice = [X_ev[code_ev == i] for i in present]
    out: dict[str, float] = {"train_accuracy": src.accuracy}
    for name, b in zip(names, baselines, strict=True):
        b.fit_source(src)
        est = [b.point(src, rows, None) for rows in per_slice]
        out[name] = float(np.mean(np.abs(np.array(est) - true)))
    return out


def run_group(
    data: SweepData,
    group: Sequence[SweepConfig],
    seed: int = 42,
    baselines: dict[str, float] | None = None,
) -> list[dict]:
    """Fit one grid search and evaluate every config of the group on every slice; the
    calibrated twin reuses the selected hyperparameters."""
    with threadpool_limits(limits=1):  # tiny fits: BLAS threads only add overhead
        return _run_group(data, group, seed, baselines)


def _run_group(data, group, seed, baselines) -> list[dict]:
    start = time.perf_counter()
    first = group[0]
    train, evaluate = data.masks(first.slices)
    y_tr = data.y[train]
    base = {
        "llm": first.llm,
        "benchmarks": "+".join(first.slices),
        "k": len(first.slices),
        "classifier": first.classifier,
        "balance_classes": first.balance,
        "features": first.features,
        "calibration": first.calibration,
        "n_train": int(train.sum()),
    }
    baselines = baselines if baselines is not None else composition_baselines(data, first.slices)
    if minority_count(y_tr) < 2:
        return [
            {"hash": c.hash, **base, "calibrate": c.calibrate, "status": "skipped_minority_lt_2"}
            for c in group
        ]
    X_tr, X_ev = data.frame(train), data.frame(evaluate)
    y_ev, code_ev = data.y[evaluate], data.code[evaluate]
    design = {
        "classifier": first.classifier,
        "balance": first.balance,
        "features": first.features,
        "calibration": first.calibration,
        "seed": seed,
        "slice_estimate": "mean",  # the paper's grid: mean p, computed here per slice
    }
    if first.search == "halving":
        columns = list(feature_names(first.features))
        _, params = grid_search(
            X_tr[columns], y_tr, first.classifier, first.balance, seed, halving=True, refit=False
        )  # the refit on all rows is the searched model's own fit
        searched = EntropySentinel(**design, calibrate=False, params=params).fit(X_tr, y_tr)
    else:
        searched = EntropySentinel(**design, calibrate=False).fit(X_tr, y_tr)
    in_comp = np.isin(np.array(data.slices), first.slices)
    ood = ~in_comp[code_ev]
    present = np.bincount(code_ev, minlength=len(data.slices)) > 0
    true = _slice_means(y_ev, code_ev, len(data.slices))
    rows = []
    for cfg in group:
        model = searched
        if cfg.calibrate:
            model = EntropySentinel(**design, calibrate=True, params=searched.best_params_)
            model.fit(X_tr, y_tr)
        p = model.p_correct(X_ev)
        est = _slice_means(p, code_ev, len(data.slices))
        aee = np.abs(est - true)
        row = {
            "hash": cfg.hash,
            **base,
            "calibrate": cfg.calibrate,
            "status": "ok",
            "spearman_rho": spearman(true[present], est[present]),
            "mae": float(aee[present].mean()),
            **p_metrics(y_ev, p, ood),
            "best_params": json.dumps(searched.best_params_, default=str),
            **baselines,
        }
        for i, s in enumerate(data.slices):
            row[f"true:{s}"] = float(true[i]) if present[i] else np.nan
            row[f"est:{s}"] = float(est[i]) if present[i] else np.nan
            row[f"aee:{s}"] = float(aee[i]) if present[i] else np.nan
        rows.append(row)
    elapsed = time.perf_counter() - start
    for row in rows:
        row["seconds"] = elapsed / len(rows)
    return rows


# ---------------------------------------------------------------- resumable chunk runner


def _part_paths(parts_dir: Path) -> list[Path]:
    return sorted(parts_dir.glob("part-*.parquet"))


def done_hashes(parts_dir: str | Path) -> set[str]:
    """Config hashes already written to a chunk's parts."""
    return {
        h
        for p in _part_paths(Path(parts_dir))
        for h in pd.read_parquet(p, columns=["hash"])["hash"]
    }


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def run_chunk(
    data: SweepData,
    configs: Sequence[SweepConfig],
    parts_dir: str | Path,
    n_jobs: int = 1,
    batch_groups: int | None = None,
    seed: int = 42,
) -> int:
    """Evaluate the configs not yet in parts_dir, flushing one Parquet part per batch.

    Returns the number of configs evaluated in this call.
    """
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    done = done_hashes(parts_dir)
    groups = [
        g for g in ([c for c in grp if c.hash not in done] for grp in fit_groups(configs)) if g
    ]
    log.info(
        "%d configs done, %d to run in %d fit groups", len(done), sum(map(len, groups)), len(groups)
    )
    batch_groups = batch_groups or max(4 * n_jobs, 4)
    existing = _part_paths(parts_dir)
    next_part = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    n_run = 0
    baselines: dict[tuple[str, ...], dict[str, float]] = {}
    parallel = None
    if n_jobs > 1:
        from sklearn.utils.parallel import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, backend="loky")
    for b in range(0, len(groups), batch_groups):
        batch = groups[b : b + batch_groups]
        start = time.perf_counter()
        for g in batch:  # baselines depend only on the composition: computed once each
            if g[0].slices not in baselines:
                baselines[g[0].slices] = composition_baselines(data, g[0].slices)
        if parallel is None:
            results = [run_group(data, g, seed, baselines[g[0].slices]) for g in batch]
        else:
            results = parallel(
                delayed(run_group)(data, g, seed, baselines[g[0].slices]) for g in batch
            )
        rows = [r for rs in results for r in rs]
        _atomic_parquet(pd.DataFrame(rows), parts_dir / f"part-{next_part:05d}.parquet")
        next_part += 1
        n_run += len(rows)
        log.info("batch of %d configs in %.1f s", len(rows), time.perf_counter() - start)
    return n_run


def collect_parts(parts_dir: str | Path, out_path: str | Path) -> pd.DataFrame:
    """Concatenate a chunk's parts (one row per hash) into its output Parquet."""
    parts = [pd.read_parquet(p) for p in _part_paths(Path(parts_dir))]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["hash"])
    df = df.drop_duplicates("hash", keep="last").reset_index(drop=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_parquet(df, out_path)
    return df


# ---------------------------------------------------------------- merge and analysis tables


def _iqr(x: pd.Series) -> float:
    return float(x.quantile(0.75) - x.quantile(0.25))


def merge_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The sweep's result tables (RQ2-RQ4) from the concatenated chunk outputs."""
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:  # every config skipped (e.g. one class in every composition): empty tables
        return {n: pd.DataFrame() for n in MERGED_TABLES}
    tables: dict[str, pd.DataFrame] = {"results": ok[RESULT_COLUMNS].reset_index(drop=True)}

    id_cols = ["hash", "llm", "benchmarks", "k", "classifier", "calibrate", "balance_classes"]
    id_cols.append("features")
    slices = sorted(c.split(":", 1)[1] for c in ok.columns if c.startswith("aee:"))
    long = []
    for s in slices:
        part = ok[id_cols].copy()
        part["slice"] = s
        part["in_training"] = ok["benchmarks"].str.split("+").apply(lambda b, s=s: s in b)
        part["true_accuracy"] = ok[f"true:{s}"]
        part["estimated_accuracy"] = ok[f"est:{s}"]
        part["aee"] = ok[f"aee:{s}"]
        long.append(part)
    aee = pd.concat(long, ignore_index=True) if long else pd.DataFrame(columns=id_cols)
    tables["aee_per_slice"] = aee.dropna(subset=["aee"]).reset_index(drop=True)

    comp = ["llm", "benchmarks", "k"]
    atc_cols = [f"atc_{f}_mae" for f in FEATURE_NAMES] + ["trivial_mae", "avg_conf_mae"]
    atc = ok.groupby(comp, as_index=False).agg(
        es_mae_median=("mae", "median"),
        es_mae_min=("mae", "min"),
        train_accuracy=("train_accuracy", "first"),
        **{c: (c, "first") for c in atc_cols},
    )
    tables["atc_mae"] = atc
    methods = {"ES (median over configs)": "es_mae_median", "ES (best config)": "es_mae_min"}
    methods |= {f"ATC[{f}]": f"atc_{f}_mae" for f in FEATURE_NAMES}
    methods |= {"training-set accuracy": "trivial_mae", "average confidence": "avg_conf_mae"}
    tables["atc_summary"] = (
        pd.DataFrame(
            [
                {
                    "method": m,
                    "mae_median": atc[c].median(),
                    "mae_iqr": _iqr(atc[c]),
                    "mae_min": atc[c].min(),
                    "n_cells": int(atc[c].notna().sum()),
                }
                for m, c in methods.items()
            ]
        )
        .sort_values("mae_median")
        .reset_index(drop=True)
    )

    tables["mae_vs_k"] = ok.groupby(["llm", "k"], as_index=False).agg(
        mae_median=("mae", "median"),
        mae_q25=("mae", lambda x: x.quantile(0.25)),
        mae_q75=("mae", lambda x: x.quantile(0.75)),
        mae_iqr=("mae", _iqr),
        n=("mae", "size"),
    )

    by_comp = ok.groupby(["k", "benchmarks"], as_index=False).agg(
        mae_median=("mae", "median"), group_accuracy=("train_accuracy", "mean")
    )
    best_worst = []
    for k, d in by_comp.groupby("k"):
        b, w = d.loc[d["mae_median"].idxmin()], d.loc[d["mae_median"].idxmax()]
        best_worst.append(
            {
                "k": k,
                "best": b["benchmarks"],
                "best_mae": b["mae_median"],
                "best_group_accuracy": b["group_accuracy"],
                "worst": w["benchmarks"],
                "worst_mae": w["mae_median"],
                "worst_group_accuracy": w["group_accuracy"],
            }
        )
    tables["best_worst"] = pd.DataFrame(best_worst)

    ablation = []
    for factor, col in (
        ("classifier", "classifier"),
        ("calibration", "calibrate"),
        ("balancing", "balance_classes"),
        ("features", "features"),
    ):
        for setting, d in ok.groupby(col):
            ablation.append(
                {
                    "factor": factor,
                    "setting": setting,
                    "mae_median": d["mae"].median(),
                    "mae_iqr": _iqr(d["mae"]),
                    "rho_median": d["spearman_rho"].median(),
                    "rho_iqr": _iqr(d["spearman_rho"]),
                    "n_rows": len(d),
                }
            )
    tables["rq4_ablation"] = pd.DataFrame(ablation)
    return tables


# ---------------------------------------------------------------- deployment estimators


DESIGN_COLUMNS = ["classifier", "calibrate", "balance_classes", "features"]


def nested_design(
    results: pd.DataFrame, llm: str, train_slices: Sequence[str]
) -> dict[str, Any] | None:
    """The estimator design chosen by leave-one-training-slice-out inside ``train_slices``.

    For every design, its nested error is the mean over held-out slices s of the sweep's
    absolute error on s when trained on the other training slices (those configs are already
    in the sweep). The slices outside ``train_slices`` never enter the choice. None when there
    are fewer than 2 training slices or the sweep lacks the leave-one-out compositions.
    """
    train_slices = sorted(train_slices)
    if len(train_slices) < 2:
        return None
    d = results[(results["llm"] == llm) & (results["status"] == "ok")]
    errors = []
    for held in train_slices:
        rest = "+".join(s for s in train_slices if s != held)
        col = f"aee:{held}"
        if col not in d:
            return None
        rows = d[d["benchmarks"] == rest].set_index(DESIGN_COLUMNS)[col].rename(held)
        errors.append(rows)
    table = pd.concat(errors, axis=1).dropna()
    if table.empty:
        return None
    nested = table.mean(axis=1)
    classifier, calibrate, balance, features = nested.idxmin()
    return {
        "classifier": classifier,
        "calibrate": bool(calibrate),
        "balance": bool(balance),
        "features": features,
        "selection": (
            f"lowest leave-one-training-slice-out MAE over {train_slices} among "
            f"{len(nested)} designs of the sweep; slices outside them were not used"
        ),
        "nested_mae": float(nested.min()),
    }


def train_deployments(
    features: pd.DataFrame,
    llm: str,
    deployments: dict[str, Sequence[str]],
    estimator_config: dict[str, Any],
    out_dir: str | Path,
    results: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fit, evaluate and save the named deployment estimators of one model.

    Each named deployment is trained with the paper's design (§5.4) and, when the sweep can
    nest it, with the design chosen by ``nested_design`` (saved as ``{name}-selected``).
    Errors in the manifest are on the slices outside the deployment's training slices only.
    Deployments whose slices are absent from the data are skipped and recorded as such.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slice_by = estimator_config["slice_by"]
    present = set(slice_labels(features, slice_by).unique())
    manifest: dict[str, Any] = {
        "llm": llm,
        "slice_by": slice_by,
        "errors_on": "slices outside each deployment's training slices (held out)",
        "estimators": {},
        "skipped": {},
    }
    for name, slices in (deployments or {}).items():
        missing = sorted(set(slices) - present)
        if missing:
            manifest["skipped"][name] = f"slices not in the data: {missing}"
            log.info("%s/%s skipped: %s", llm, name, manifest["skipped"][name])
            continue
        designs = {name: {**DEPLOYMENT_ESTIMATOR, "selection": "the paper's default (§5.4)"}}
        chosen = nested_design(results, llm, slices) if results is not None else None
        if chosen is not None:
            designs[f"{name}-selected"] = chosen
        for label, design in designs.items():
            cfg = {**estimator_config, **{k: design[k] for k in DEPLOYMENT_ESTIMATOR}}
            result = run_evaluation(features, list(slices), slice_by, cfg)
            path = result.estimator.save(out_dir / f"{label}.skops")
            result.per_slice.to_csv(out_dir / f"{label}_slices.csv", index=False)
            m = result.metrics
            manifest["estimators"][label] = {
                "path": str(path),
                "train_slices": list(slices),
                "config": result.estimator.config(),
                "selection": design["selection"],
                "nested_mae": design.get("nested_mae"),
                "mae_held_out": m["mae_ood"],
                "estimators_mae_held_out": {k: v["mae_ood"] for k, v in m["estimators"].items()},
                "auroc_ood_pooled": m["auroc_ood_pooled"],
            }
            log.info("%s/%s: held-out MAE %.4f", llm, label, m["mae_ood"])
    return manifest
