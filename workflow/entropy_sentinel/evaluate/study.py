"""A study on real models, kept small enough to commit: export and the README's tables.

``export_study`` copies one model's results into ``data/studies/<name>/``: the per-response
features with their grades and split (``features.parquet``), the grades
(``grades.parquet``), the response text with token counts and finish reasons
(``responses.parquet``, a retried truncated item's retry in place of its first try; no
log-probability arrays, no questions or reference answers, which stay in
../shared/benchmarks), the evaluation tables and ``provenance.json`` (config, model
file and wheels, engine, timing and throughput). ``results_markdown`` renders the README
section "Results on real models" from such a folder, so the README's numbers come from the
committed data.

    python -m entropy_sentinel.evaluate.study export \\
        --config config/cpu-study.yaml --model qwen05b --out data/studies/cpu-qwen05b
    python -m entropy_sentinel.evaluate.study markdown data/studies/cpu-qwen05b
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

from entropy_sentinel.config.loading import (
    load_config_file,
    parse_settings,
    validate_config,
    validate_section,
)
from entropy_sentinel.estimate.classifier import feature_names
from entropy_sentinel.estimate.regime import (
    FeatureSupport,
    compare_settings,
    settings_from_generation,
    verdict,
)
from entropy_sentinel.evaluate.label_study import SIZES, SPARE, label_study
from entropy_sentinel.evaluate.metrics import auroc_failure
from entropy_sentinel.evaluate.protocol import (
    clean_features,
    composition_study,
    leave_one_out,
    sampled_compositions,
    transfer_study,
)
from entropy_sentinel.evaluate.recalibrate_study import recalibrate_study
from entropy_sentinel.features.compute import (
    ALL_FEATURES,
    ANSWER_FEATURES,
    FEATURE_NAMES,
    FEATURE_SETS,
    PROVENANCE_KEY,
    read_feature_spec,
)
from entropy_sentinel.generate.shard import prefer_retries
from entropy_sentinel.provenance import (
    library_versions,
    now,
    read_provenance,
    write_json,
    write_parquet,
)

RESPONSE_COLUMNS = ("item_id", "response", "n_tokens", "prompt_tokens", "finish_reason", "error")
EVALUATION_FILES = ("estimators.csv", "slices.csv", "metrics.json", "study.csv")
MAX_BYTES = 25 * 2**20

# Failure AUROC ranges over the paper's nine LLMs (reference §7.2, top-20 profile).
PAPER_AUROC = {
    "se_sum": {"gsm8k": (0.742, 0.819), "math500": (0.601, 0.933), "olympiadbench": (0.795, 0.898)},
    "nll_sum": {
        "gsm8k": (0.738, 0.805),
        "math500": (0.599, 0.932),
        "olympiadbench": (0.791, 0.898),
    },
    "max": {"gsm8k": (0.699, 0.814), "math500": (0.539, 0.920), "olympiadbench": (0.732, 0.847)},
    "q10": {"gsm8k": (0.710, 0.775), "math500": (0.648, 0.861), "olympiadbench": (0.575, 0.891)},
    "mean": {"gsm8k": (0.690, 0.809), "math500": (0.552, 0.876), "olympiadbench": (0.526, 0.868)},
    "nll_avg": {
        "gsm8k": (0.333, 0.787),
        "math500": (0.413, 0.875),
        "olympiadbench": (0.513, 0.868),
    },
}


def export_study(
    config_path: str | Path, model: str, out: str | Path, root=".", partial: bool = False
) -> dict:
    """Copy ``model``'s results under ``root`` into ``out``; returns the provenance written.

    ``partial``: a study still generating exports the benchmarks whose features exist (and
    the evaluation tables only if they do); its provenance lists what is missing."""
    root, out = Path(root), Path(out)
    config = validate_config(load_config_file(config_path))
    benchmarks = list(config["benchmarks"])
    missing = [
        n for n in benchmarks if not (root / f"results/features/{model}/{n}.parquet").exists()
    ]
    if partial:
        benchmarks = [n for n in benchmarks if n not in missing]
    elif missing:
        raise FileNotFoundError(f"no features yet for {missing}: finish the run, or --partial")
    out.mkdir(parents=True, exist_ok=True)
    features, grades, responses, timing = [], [], [], {}
    retry = config["generation"].get("retry_truncated") or {}
    for name in benchmarks:
        folder = root / f"results/generations/{model}/{name}"
        shards, retries = sorted(folder.glob("shard-*.parquet")), []
        if retry.get("enabled") and name in (retry.get("benchmarks") or benchmarks):
            retries = sorted(folder.glob("retry-*.parquet"))  # what the grades were made from
        if not shards:
            raise FileNotFoundError(f"{name}: no generations under results/generations/{model}")
        first = [pd.read_parquet(s, columns=list(RESPONSE_COLUMNS)) for s in shards]
        again = [pd.read_parquet(r, columns=list(RESPONSE_COLUMNS)) for r in retries]
        rows = prefer_retries(pd.concat(first), pd.concat(again)) if again else pd.concat(first)
        responses.append(rows.assign(benchmark=name))
        grades.append(pd.read_parquet(root / f"results/grades/{model}/{name}.parquet"))
        grades[-1].insert(1, "benchmark", name)
        features.append(pd.read_parquet(root / f"results/features/{model}/{name}.parquet"))
        jobs = [(root / f"timings/generate/{model}/{name}", folder)]
        if retries:
            jobs.append((root / f"timings/regenerate_truncated/{model}/{name}", folder))
        timing[name] = _job_seconds(jobs, pd.concat(first + again))
    spec = read_feature_spec([root / f"results/features/{model}/{n}.parquet" for n in benchmarks])
    write_parquet(
        pd.concat(features, ignore_index=True),
        out / "features.parquet",
        {PROVENANCE_KEY: spec.as_dict()},
    )
    write_parquet(pd.concat(grades, ignore_index=True), out / "grades.parquet")
    write_parquet(pd.concat(responses, ignore_index=True), out / "responses.parquet")
    for file in EVALUATION_FILES:
        if not partial or (root / f"results/evaluation/{model}/{file}").exists():
            shutil.copyfile(root / f"results/evaluation/{model}/{file}", out / file)
    manifest = json.loads((root / f"resources/models/{model}/manifest.json").read_text())
    # jobs overlap (shards share the servers) and may run apart (a shard redone later):
    # throughput is over the time at least one generation job ran
    wall = _covered_seconds([span for t in timing.values() for span in t.pop("spans")])
    provenance = study_provenance(
        model,
        config,
        {k: manifest.get(k) for k in ("source", "spec", "gguf_sha256", "wheels")},
        read_provenance(shards[0]),
        timing,
        generating_seconds=wall,
        wall_seconds=wall,
    )
    if partial:
        provenance["partial"] = {"done": benchmarks, "missing": missing}
    write_json(provenance, out / "provenance.json")
    size = sum(p.stat().st_size for p in out.iterdir())
    if size > MAX_BYTES:
        raise ValueError(
            f"{out} holds {size / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB a study "
            "may commit"
        )
    return provenance


def study_provenance(
    model: str,
    config: dict,
    model_file: dict,
    generation: dict,
    per_benchmark: dict,
    generating_seconds: float,
    wall_seconds: float,
) -> dict:
    """A study folder's provenance.json, as ``results_markdown`` reads it. ``per_benchmark``
    holds each benchmark's generation ``seconds`` and ``tokens``; throughput is over
    ``generating_seconds``, the time the tokens were made in."""
    tokens = sum(t["tokens"] for t in per_benchmark.values())
    return {
        "model": model,
        "config": config,
        "model_file": model_file,
        "generation": generation,
        "generation_time": {
            "per_benchmark": per_benchmark,
            "tokens": tokens,
            "job_seconds": round(sum(t["seconds"] for t in per_benchmark.values()), 1),
            "wall_seconds": round(wall_seconds, 1),
            "tokens_per_second": (
                round(tokens / generating_seconds, 2) if generating_seconds > 0 else None
            ),
        },
        "exported_at": now(),
        "versions": library_versions(),
    }


def _job_seconds(jobs: list[tuple[Path, Path]], rows: pd.DataFrame) -> dict:
    """Wall seconds of the generation jobs (Snakemake's benchmark: files in the first folder
    of each pair, first runs and retries of truncated items), each job's (start, end), and every
    token they made. A job ends when its output (same stem, second folder) was written, by its
    provenance; the benchmark file's mtime stands in only without one (`--touch` moves it)."""
    seconds, spans = 0.0, []
    for tsv_folder, output_folder in jobs:
        for tsv in sorted(tsv_folder.glob("*.tsv")):
            with tsv.open() as handle:
                job = sum(float(r["s"]) for r in csv.DictReader(handle, delimiter="\t"))
            output = output_folder / f"{tsv.stem}.parquet"
            written = read_provenance(output).get("written_at") if output.exists() else None
            end = datetime.fromisoformat(written).timestamp() if written else tsv.stat().st_mtime
            seconds += job
            spans.append((end - job, end))
    tokens = int(rows["n_tokens"].fillna(0).sum())
    return {"seconds": round(seconds, 1), "tokens": tokens, "spans": spans}


def _covered_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of (start, end) spans."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


# ---------------------------------------------------------------- the README tables


def benchmark_table(study: str | Path) -> pd.DataFrame:
    """Per benchmark: items, accuracy, ungraded, truncated, no final answer, mean tokens, and
    the failure AUROC of the entropy sum and the NLL sum."""
    study = Path(study)
    features = pd.read_parquet(study / "features.parquet")
    grades = pd.read_parquet(study / "grades.parquet")
    order = list(dict.fromkeys(features["benchmark"]))
    rows = []
    for name in [*order, "pooled"]:
        f = features if name == "pooled" else features[features["benchmark"] == name]
        g = grades if name == "pooled" else grades[grades["benchmark"] == name]
        graded = f.dropna(subset=["correct", *FEATURE_NAMES])
        y = graded["correct"].astype(bool).to_numpy()
        rows.append(
            {
                "benchmark": name,
                "items": len(f),
                "accuracy": float(y.mean()) if len(y) else np.nan,
                "ungraded": int(g["correct"].isna().sum()),
                "truncated": int(g["truncated"].sum()),
                "no_final": int(g["reason"].astype(str).str.startswith("no final answer").sum()),
                "mean_tokens": float(f["n_tokens"].mean()),
                "auroc_se_sum": _auroc(y, graded["se_sum"]),
                "auroc_nll_sum": _auroc(y, graded["nll_sum"]),
            }
        )
    return pd.DataFrame(rows)


def _auroc(y: np.ndarray, score) -> float:
    """Failure AUROC, NaN when a slice has a single class."""
    return auroc_failure(y, np.asarray(score)) if 0 < y.sum() < len(y) else np.nan


def feature_auroc(study: str | Path) -> pd.DataFrame:
    """Failure AUROC of each feature (rows) pooled and on the paper's three benchmarks."""
    features = pd.read_parquet(Path(study) / "features.parquet")
    graded = features.dropna(subset=["correct", *FEATURE_NAMES])
    y = graded["correct"].astype(bool).to_numpy()
    names = [f for f in ALL_FEATURES if f in graded]  # studies before the answer features
    table = {"pooled": {f: _auroc(y, graded[f]) for f in names}}
    for name in ("gsm8k", "math500", "olympiadbench"):
        part = graded[graded["benchmark"] == name]
        yb = part["correct"].astype(bool).to_numpy()
        table[name] = {f: _auroc(yb, part[f]) for f in names}
    return pd.DataFrame(table)


def answer_feature_gain(study: str | Path, base: str = "3D") -> pd.DataFrame:
    """What each feature beyond the paper adds on held-out slices: leave one slice out, an L1
    logistic regression on ``base`` plus that feature (and on all of them) is trained on the
    other slices; its p on the held-out slices' rows, pooled, gives a failure AUROC, and so
    does the mean of per-slice AUROCs (slices with both classes). ``gain`` is the pooled AUROC
    minus ``base``'s alone."""
    from entropy_sentinel.estimate.classifier import EntropySentinel

    features = pd.read_parquet(Path(study) / "features.parquet").dropna(subset=["correct"])
    names = [f for f in ANSWER_FEATURES if f in features]
    base_columns = FEATURE_SETS[base]
    designs = {base: base_columns, **{f"+{f}": (*base_columns, f) for f in names}}
    designs[f"{base}+answer"] = (*base_columns, *names)
    y = features["correct"].astype(bool).to_numpy()
    slices = features["benchmark"].astype(str).to_numpy()
    rows = []
    for label, columns in designs.items():
        model = EntropySentinel(features=columns, slice_estimate="mean")
        p = cross_val_predict(
            model, features, y, groups=slices, cv=LeaveOneGroupOut(), method="predict_proba"
        )[:, 1]
        within = [
            auroc_failure(y[slices == s], -p[slices == s])
            for s in np.unique(slices)
            if 0 < y[slices == s].mean() < 1
        ]
        rows.append({"features": label, "pooled": auroc_failure(y, -p), "within": np.mean(within)})
    table = pd.DataFrame(rows)
    return table.assign(gain=table["pooled"] - table["pooled"].iloc[0])


def _f(value, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def results_markdown(study: str | Path) -> str:
    """The README section "Results on real models" for one committed study folder."""
    from entropy_sentinel.report.render import estimator_table

    study = Path(study)
    provenance = json.loads((study / "provenance.json").read_text())
    timing = provenance["generation_time"]
    settings = provenance["config"]["generation"]["settings"]
    retry = provenance["config"]["generation"].get("retry_truncated", {})
    budget = f"at most {settings['max_new_tokens']} new tokens"
    if retry.get("enabled"):
        budget += f" ({retry['max_new_tokens']} when a truncated response is generated again)"
    table = benchmark_table(study)
    done = provenance.get("partial")
    partial = (
        f" **Partial**: {len(done['done'])} of {len(done['done']) + len(done['missing'])} "
        "slices generated so far; the run resumes."
        if done
        else ""
    )
    lines = [
        f"Study `{study.as_posix()}`: model `{provenance['model']}` "
        f"(GGUF sha256 `{(provenance['model_file'].get('gguf_sha256') or '')[:12]}`), "
        f"{int(table['items'].iloc[-1])} responses, T={settings['temperature']}, "
        f"top-{settings['top_k_logprobs']} raw log-probs, {budget}, "
        f"seed {settings['seed']}. Generation: {timing['tokens']} tokens in "
        f"{timing['wall_seconds'] / 60:.0f} min, {timing['tokens_per_second']} tok/s.{partial}",
        "",
        "| benchmark | items | accuracy | ungraded | truncated | no final answer | mean tokens "
        "| AUROC SE_sum | AUROC NLL_sum |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.benchmark} | {r.items} | {_f(r.accuracy)} | {r.ungraded} | {r.truncated} "
            f"| {r.no_final} | {r.mean_tokens:.0f} | {_f(r.auroc_se_sum)} "
            f"| {_f(r.auroc_nll_sum)} |"
        )
    aurocs = feature_auroc(study)
    lines += [
        "",
        "Failure AUROC per feature (failure is the positive class), beside the range over the "
        "paper's nine LLMs (reference §7.2; GSM8K / MATH-500 / OlympiadBench):",
        "",
        "| feature | pooled | GSM8K | paper GSM8K | MATH-500 | paper MATH | OlympiadBench "
        "| paper Olymp. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for feature in aurocs.index:
        a, paper = aurocs.loc[feature], PAPER_AUROC.get(feature, {})
        cells = [_f(a["pooled"])]
        for name in ("gsm8k", "math500", "olympiadbench"):
            lo_hi = paper.get(name)
            cells += [_f(a[name]), f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}" if lo_hi else ""]
        lines.append(f"| {feature} | " + " | ".join(cells) + " |")
    table = study / "estimators.csv"
    exists = table.exists() and table.stat().st_size > 1
    estimators = pd.read_csv(table).to_dict("records") if exists else []
    lines += [
        "",
        "Label-free accuracy estimates on held-out benchmarks (`estimators.csv` of rule "
        "evaluate: every composition of training benchmarks, scored on the others; the "
        f"design: {_design_text(provenance['config']['estimator'])}):",
        "",
        *(
            estimator_table(estimators)
            if estimators
            else [
                "Not run yet: the study is partial."
                if done
                else "No composition of training benchmarks had two right and two wrong answers."
            ]
        ),
    ]
    gain = study / "answer-features-loso.csv"
    if gain.exists():
        lines += [
            "",
            "Features beyond the paper (`answer_feature_gain`): leave one slice out, L1 logistic "
            "regression on 3D plus each feature; failure AUROC of p on the held-out slices, "
            "pooled and within slices (mean over slices with both classes):",
            "",
            "| features | pooled | within slices | pooled gain over 3D |",
            "|---|---|---|---|",
            *(
                f"| {r.features} | {_f(r.pooled)} | {_f(r.within)} | {r.gain:+.3f} |"
                for r in pd.read_csv(gain).itertuples(index=False)
            ),
        ]
    for file, title in _held_out_tables(study):
        lines += ["", title, "", *estimator_table(pd.read_csv(file).to_dict("records"))]
    return "\n".join(lines) + "\n"


def _held_out_tables(study: Path) -> list[tuple[Path, str]]:
    """The held-out studies run on a study folder (study holdout / transfer), with titles."""
    found = []
    for file in sorted(study.glob("estimators-*.csv")):
        kind = file.stem.removeprefix("estimators-")
        if kind.startswith("from-"):
            title = f"Trained on every row of `{kind[5:]}`, estimating this study's slices"
        elif kind.startswith("loso"):
            title = f"Leave one slice out (`{kind}`): trained on all other slices"
        else:
            title = f"Held-out study `{kind}` (seeded compositions of training slices)"
        design = file.with_suffix(".json")
        if design.exists():
            title += f"; the design: {_design_text(json.loads(design.read_text()))}"
        found.append((file, title + ":"))
    return found


def _design_text(design: dict) -> str:
    text = f"{design['classifier']} on {design['features']}"
    text += ", calibrated" if design["calibrate"] else ", uncalibrated"
    if "slice_estimate" in design:  # exports from before it existed read out the mean p
        text += f", slice estimate {design['slice_estimate']}"
    return text


README_START = "<!-- study:{name} -->"
README_END = "<!-- /study:{name} -->"


def study_design(folder: Path, overrides: dict | None = None) -> dict:
    """The estimator section a study folder was configured with (its provenance), with
    ``overrides``, checked against the schema."""
    config = json.loads((folder / "provenance.json").read_text())["config"]
    return validate_section("estimator", {**config["estimator"], **(overrides or {})})


def holdout_study(
    study: str | Path,
    protocol: str = "loso",
    sizes: tuple[int, ...] = (1, 2, 3),
    per_size: int = 20,
    overrides: dict | None = None,
    n_jobs: int = 2,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out study on a study folder's features, as configured in its provenance
    (``overrides`` replace estimator keys, e.g. ``{"features": "3D+answer"}``).

    ``loso``: every slice held out once, trained on all the others; ``sampled``: up to
    ``per_size`` compositions of each of ``sizes`` training slices, drawn by ``seed``.
    Returns (long, per-estimator table) as ``composition_study`` does.
    """
    folder = Path(study)
    estimator = study_design(folder, overrides)
    features = pd.read_parquet(folder / "features.parquet")
    names = sorted(features[estimator["slice_by"]].astype(str).unique())
    if protocol == "loso":
        training = leave_one_out(names)
    elif protocol == "sampled":
        training = sampled_compositions(names, sizes, per_size, seed)
    else:
        raise ValueError(f"protocol must be 'loso' or 'sampled', not {protocol!r}")
    return composition_study(
        features, estimator["slice_by"], estimator, n_jobs=n_jobs, training=training
    )


def transfer(
    source: str | Path, target: str | Path, overrides: dict | None = None, n_jobs: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deployment path between two study folders of the same slices: trained on every
    labelled row of ``source`` as its provenance configures, estimating ``target``'s slices."""
    estimator = study_design(Path(source), overrides)
    return transfer_study(
        pd.read_parquet(Path(source) / "features.parquet"),
        pd.read_parquet(Path(target) / "features.parquet"),
        estimator["slice_by"],
        estimator,
        n_jobs=n_jobs,
    )


def regime_study(source: str | Path, target: str | Path, overrides: dict | None = None):
    """The regime check (estimate.regime) measured: each slice of ``source`` held out from the
    others' support (same regime: a ``shifted`` verdict is a false alarm), and each slice of
    ``target`` against all of ``source`` (another regime: ``shifted`` is a detection). Returns
    one row per slice and the rates, for the settings check, the features check and both."""
    estimator = study_design(Path(source), overrides)
    options, slice_by = estimator["regime"], estimator["slice_by"]
    columns = list(feature_names(estimator["features"]))
    source_rows, _ = clean_features(pd.read_parquet(Path(source) / "features.parquet"))
    target_rows, _ = clean_features(pd.read_parquet(Path(target) / "features.parquet"))
    trained = settings_from_generation(study_generation(Path(source)))
    served = settings_from_generation(study_generation(Path(target)))

    def check(reference: pd.DataFrame, held: pd.DataFrame, settings: dict | None) -> dict:
        support = FeatureSupport.fit(
            reference[columns].to_numpy(),
            reference[slice_by].astype(str).to_numpy(),
            columns,
            quantile=options["support_quantile"],
            min_rows=options["min_rows"],
            seed=estimator["seed"],
        )
        features, evidence = support.check(held[columns].to_numpy())
        settings_state, differ = compare_settings(trained, [settings] if settings else None)
        return {
            "n": len(held),
            "outside_share": evidence.get("outside_share"),
            "threshold": evidence["threshold"],
            "features": features,
            "settings": settings_state,
            "settings_differ": " ".join(sorted(differ)),
            "regime": verdict(settings_state, features),
        }

    table = []
    for name, held in source_rows.groupby(source_rows[slice_by].astype(str)):
        rest = source_rows[source_rows[slice_by].astype(str) != name]
        table.append({"data": "source", "slice": name, **check(rest, held, trained)})
    for name, held in target_rows.groupby(target_rows[slice_by].astype(str)):
        table.append({"data": "target", "slice": name, **check(source_rows, held, served)})
    table = pd.DataFrame(table)
    rates = {
        f"{data} {check_name}": float(
            (table.loc[table["data"] == data, column] == "shifted").mean()
        )
        for data in ("source", "target")
        for check_name, column in (
            ("settings", "settings"),
            ("features", "features"),
            ("both", "regime"),
        )
    }
    return table, rates


def study_generation(folder: Path) -> dict | None:
    """The generation block a study folder was configured with (its provenance.json), or None
    for a folder without one."""
    provenance = Path(folder) / "provenance.json"
    if not provenance.is_file():
        return None
    return (json.loads(provenance.read_text()).get("config") or {}).get("generation")


def readme_block(readme: str, name: str) -> str | None:
    """The text between a study's markers in the README, or None."""
    start, end = README_START.format(name=name), README_END.format(name=name)
    if start not in readme or end not in readme:
        return None
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def update_readme(readme_path: str | Path, study: str | Path) -> None:
    """Rewrite the README's block of this study from its data."""
    path, name = Path(readme_path), Path(study).name
    text = path.read_text()
    start, end = README_START.format(name=name), README_END.format(name=name)
    if readme_block(text, name) is None:
        raise ValueError(f"{path} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{results_markdown(study)}{end}{tail}")


def labels_command(args) -> None:
    """`study labels`: writes labels-from-SOURCE (in TARGET) or labels-loso (in SOURCE): the
    table (.csv), the per-slice draws (-slices.csv) and the design with the label-free
    interval per slice (.json)."""
    source = Path(args.source)
    overrides = parse_settings(args.set)
    design = study_design(source, overrides)
    if args.label_free and args.target:
        raise ValueError("--label-free is for leave one slice out (no TARGET)")
    label_free = pd.read_csv(args.label_free) if args.label_free else None
    table, long, free = label_study(
        source, args.target, design, tuple(args.sizes), args.repeats, args.seed, args.only,
        args.jobs, label_free,
    )  # fmt: skip
    folder, stem = (
        (Path(args.target), f"labels-from-{source.name}")
        if args.target
        else (source, "labels-loso")
    )
    table.to_csv(folder / f"{stem}.csv", index=False)
    long.to_csv(folder / f"{stem}-slices.csv", index=False)
    protocol = {"sizes": list(args.sizes), "repeats": args.repeats, "seed": args.seed}
    protocol |= {"spare": SPARE, "only": args.only, "source": source.name}
    protocol["label_free"] = args.label_free or "the estimator's own (fit_deployed)"
    write_json(
        {"estimator": design, "protocol": protocol, "label_free": free.to_dict("records")},
        folder / f"{stem}.json",
    )
    print(table.to_string(index=False))


def recalibrate_command(args) -> None:
    """`study recalibrate`: writes recalibrate-from-SOURCE in TARGET: the table (.csv), one
    row per choice of labelled slices and other slice (-slices.csv), and the design (.json)."""
    source, target = Path(args.source), Path(args.target)
    overrides = parse_settings(args.set)
    design = study_design(source, overrides)
    per_slice = (None, *args.per_slice)
    table, long, extra = recalibrate_study(
        source, target, design, tuple(args.sizes), per_slice, args.seed, args.only, args.jobs
    )
    stem = target / f"recalibrate-from-{source.name}{'-' + args.tag if args.tag else ''}"
    table.to_csv(stem.with_suffix(".csv"), index=False)
    long.to_csv(stem.parent / f"{stem.name}-slices.csv", index=False)
    protocol = {"sizes": list(args.sizes), "per_slice": list(per_slice), "seed": args.seed}
    protocol |= {"only": args.only, "source": source.name, "target": target.name}
    write_json({"estimator": design, "protocol": protocol, **extra}, stem.with_suffix(".json"))
    print(table.to_string(index=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m entropy_sentinel.evaluate.study")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="copy a model's results into a study folder")
    export.add_argument("--config", required=True)
    export.add_argument("--model", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--readme", help="also rewrite this README's block of the study")
    export.add_argument("--root", default=".", help="the workflow folder holding results/")
    export.add_argument(
        "--partial", action="store_true", help="export the benchmarks done so far (a run cut short)"
    )
    show = sub.add_parser("markdown", help="print the README section of a study folder")
    show.add_argument("study")
    holdout = sub.add_parser("holdout", help="a held-out study on a study folder's features")
    holdout.add_argument("study")
    holdout.add_argument("--protocol", choices=["loso", "sampled"], default="loso")
    holdout.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3])
    holdout.add_argument("--per-size", type=int, default=20)
    holdout.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an estimator key (YAML value), e.g. --set features=3D+answer",
    )
    holdout.add_argument("--tag", default=None, help="suffix of the files written")
    holdout.add_argument("--jobs", type=int, default=2)
    gain = sub.add_parser("answer-features", help="held-out AUROC gain of each answer feature")
    gain.add_argument("study")
    deploy = sub.add_parser("transfer", help="train on one study folder, estimate another's")
    deploy.add_argument("source")
    deploy.add_argument("target")
    deploy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    deploy.add_argument("--jobs", type=int, default=2)
    regime = sub.add_parser(
        "regime", help="the regime check's false alarms (source) and detections (target)"
    )
    regime.add_argument("source")
    regime.add_argument("target")
    regime.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    labels = sub.add_parser(
        "labels", help="PPI++ from a few labels per slice against labels alone and label-free"
    )
    labels.add_argument("source", help="the study folder the estimator is trained on")
    labels.add_argument(
        "target", nargs="?", help="the study folder it scores; none: leave one slice out"
    )
    labels.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    labels.add_argument("--repeats", type=int, default=500, help="draws of labels per slice")
    labels.add_argument("--seed", type=int, default=0)
    labels.add_argument(
        "--only",
        nargs="+",
        help="estimate these slices only (a quick run; transfer: also trains on these only)",
    )
    labels.add_argument(
        "--label-free",
        help="leave one slice out: the holdout-loso CSV of the same design, whose label-free "
        "intervals are used (each fold then fits the classifier alone)",
    )
    labels.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    labels.add_argument("--jobs", type=int, default=2)
    recal = sub.add_parser(
        "recalibrate",
        help="labels on m slices of TARGET refit the readout; the other slices estimated",
    )
    recal.add_argument("source", help="the study folder the estimator is trained on")
    recal.add_argument("target", help="the study folder of the new regime")
    recal.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3])
    recal.add_argument(
        "--per-slice",
        type=int,
        nargs="*",
        default=[20],
        help="also label only this many rows per labelled slice (besides all of them)",
    )
    recal.add_argument("--seed", type=int, default=0)
    recal.add_argument("--only", nargs="+", help="these slices only, of both (a quick run)")
    recal.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    recal.add_argument("--tag", default=None, help="suffix of the files written")
    recal.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "labels":
        labels_command(args)
    elif args.command == "recalibrate":
        recalibrate_command(args)
    elif args.command == "export":
        export_study(args.config, args.model, args.out, root=args.root, partial=args.partial)
        if args.readme:
            update_readme(args.readme, args.out)
    elif args.command == "transfer":
        overrides = parse_settings(args.set)
        long, table = transfer(args.source, args.target, overrides, args.jobs)
        name = Path(args.source).name
        long.to_csv(Path(args.target) / f"transfer-from-{name}.csv", index=False)
        table.to_csv(Path(args.target) / f"estimators-from-{name}.csv", index=False)
        write_json(
            study_design(Path(args.source), overrides),
            Path(args.target) / f"estimators-from-{name}.json",
        )
        print(table.to_string(index=False))
    elif args.command == "regime":
        overrides = parse_settings(args.set)
        table, rates = regime_study(args.source, args.target, overrides)
        stem = Path(args.target) / f"regime-from-{Path(args.source).name}"
        table.to_csv(stem.with_suffix(".csv"), index=False)
        write_json(
            {"design": study_design(Path(args.source), overrides), "shifted_share": rates},
            stem.with_suffix(".json"),
        )
        print(table.to_string(index=False))
        print(json.dumps(rates, indent=1))
    elif args.command == "answer-features":
        table = answer_feature_gain(args.study)
        table.to_csv(Path(args.study) / "answer-features-loso.csv", index=False)
        print(table.to_string(index=False))
    elif args.command == "holdout":
        overrides = parse_settings(args.set)
        long, table = holdout_study(
            args.study, args.protocol, tuple(args.sizes), args.per_size, overrides, args.jobs
        )
        name = f"{args.protocol}{'-' + args.tag if args.tag else ''}"
        long.to_csv(Path(args.study) / f"holdout-{name}.csv", index=False)
        table.to_csv(Path(args.study) / f"estimators-{name}.csv", index=False)
        write_json(
            study_design(Path(args.study), overrides), Path(args.study) / f"estimators-{name}.json"
        )
        print(table.to_string(index=False))
    else:
        print(results_markdown(args.study), end="")


if __name__ == "__main__":
    main()
