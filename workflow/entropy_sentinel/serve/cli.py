"""``entropy-sentinel``: score served traffic with a saved estimator, monitor it, inspect one.

    entropy-sentinel train FEATURES.parquet --slice-field benchmark --out EST.skops
    entropy-sentinel inspect results/evaluation/MODEL/estimator.skops
    entropy-sentinel score LOG.jsonl --estimator EST --response-field response \\
        --slice-field tenant --logprobs-mode raw --out scored/
    entropy-sentinel monitor LOG.jsonl ... --estimator EST --window hour --min-accuracy 0.6 \\
        --max-drop 0.1 --out monitor/
    entropy-sentinel label scored/ --per-slice 20 --seed 0 --out labels.csv
    entropy-sentinel proxy --upstream http://127.0.0.1:8080 --estimator EST \\
        --slice-header X-Slice --listen 127.0.0.1:8787
    entropy-sentinel recalibrate LOG.jsonl --estimator EST --labels labels.csv \\
        --response-field response --slice-field tenant --out NEW.skops

Exit status: 0 done; 2 bad input or usage (the message says what, where and the fix);
3 ``monitor`` raised alerts (each also a JSON line on stderr and a record in alerts.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from entropy_sentinel.config.loading import schema_defaults

EXIT_BAD_INPUT = 2
EXIT_ALERT = 3


def _log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "logs",
        nargs="+",
        type=Path,
        help="JSONL of OpenAI chat/completions responses (one per line, or under "
        "--response-field of each log record), or a generation Parquet of this project",
    )
    parser.add_argument("--estimator", required=True, type=Path, help="a saved .skops estimator")
    parser.add_argument(
        "--response-field", help="dotted path of the response in each record; default: the line"
    )
    parser.add_argument("--slice-field", help="dotted path of the slice key; default: one slice")
    parser.add_argument(
        "--time-field",
        help="dotted path of the time (unix seconds or ISO 8601); default: the response's created",
    )
    parser.add_argument(
        "--id-field",
        help="dotted path of each response's id (labels and alerts join on it); "
        "default: the response's own id (a generation Parquet: item_id)",
    )
    parser.add_argument(
        "--request-field",
        help="dotted path of the logged request body: its generation settings are compared "
        "with the estimator's training settings (the regime check)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="a CSV of id and correct (1/0; empty: not labelled) for some responses: each "
        "slice's (window's) estimate becomes the prediction-powered one (PPI++) of its labels",
    )
    parser.add_argument(
        "--label-field", default="correct", help="the labels CSV's column of 1/0 labels"
    )
    parser.add_argument(
        "--under-shift",
        choices=("widen", "withhold"),
        help="a shifted slice's interval: widened by what the shift cost on the testbed, or "
        "withheld; default: the estimator's (config estimator.regime.under_shift)",
    )
    parser.add_argument(
        "--logprobs-mode",
        choices=("raw", "processed"),
        help="what the server's log-probs are (vLLM --logprobs-mode raw_logprobs and "
        "llama-server: raw); checked against the estimator's",
    )


def _labelled_arguments(parser: argparse.ArgumentParser) -> None:
    """How `train` and `recalibrate` read labelled logs: a labels CSV joined on ids."""
    parser.add_argument(
        "--labels", type=Path, help="logs: a CSV of id and correct (1/0) per response"
    )
    parser.add_argument(
        "--id-field",
        help="logs: dotted path of each response's id, which the labels CSV's id column "
        "holds; default: the response's own id",
    )
    parser.add_argument(
        "--label-field", default="correct", help="the labels CSV's column of 1/0 labels"
    )
    parser.add_argument(
        "--response-field", help="logs: dotted path of the response; default: the line"
    )
    parser.add_argument(
        "--request-field",
        help="logs: dotted path of the logged request body; its generation settings are "
        "recorded with the estimator for the regime check",
    )
    parser.add_argument("--logprobs-mode", choices=("raw", "processed"), help="logs: their kind")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entropy-sentinel",
        description="Label-free accuracy estimates for served LLM traffic.",
        epilog="Exit status: 0 done, 2 bad input, 3 monitor alerts.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="fit an estimator with its interval on labelled rows: feature Parquet files, or "
        "traffic logs with a labels CSV",
    )
    train.add_argument(
        "features",
        nargs="+",
        type=Path,
        help="feature Parquet files (labels in `correct`), or JSONL traffic logs (with --labels)",
    )
    train.add_argument(
        "--slice-field",
        default="benchmark",
        help="the slice of each row (the interval is learnt across slices): a Parquet's "
        "benchmark or domain column, or a log record's dotted path",
    )
    train.add_argument("--out", type=Path, required=True, help="the .skops file to write")
    _labelled_arguments(train)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an estimator setting of the config schema, e.g. --set classifier=logistic_regression",
    )
    train.add_argument("--jobs", type=int, default=1, help="parallel refits for the interval")

    recal = commands.add_parser(
        "recalibrate",
        help="refit an estimator's readout (not its classifier) on labelled traffic of a new "
        "regime; its other slices are then estimated label-free",
    )
    recal.add_argument(
        "logs",
        nargs="+",
        type=Path,
        help="JSONL traffic logs (with --labels), or feature Parquet files (labels in `correct`)",
    )
    recal.add_argument("--estimator", required=True, type=Path, help="the saved .skops estimator")
    recal.add_argument(
        "--slice-field",
        help="the slice of each row (recorded): a log record's dotted path, or a Parquet's "
        "benchmark or domain column; default: one slice (a Parquet: benchmark)",
    )
    recal.add_argument("--out", type=Path, required=True, help="the new .skops file to write")
    _labelled_arguments(recal)

    inspect = commands.add_parser("inspect", help="what a saved estimator expects")
    inspect.add_argument("estimator", type=Path)
    inspect.add_argument("--json", action="store_true", help="the full metadata as JSON")

    score = commands.add_parser(
        "score", help="p(correct) per response and estimated accuracy per slice"
    )
    _log_arguments(score)
    score.add_argument("--out", type=Path, help="write responses.parquet, slices.csv, summary.json")

    monitor = commands.add_parser(
        "monitor", help="estimates per slice over time windows, with alerts"
    )
    _log_arguments(monitor)
    defaults = schema_defaults("monitor", "*")  # the same settings as a config's monitor: block
    monitor.add_argument("--window", choices=("hour", "day"), default=defaults["window"])
    monitor.add_argument(
        "--baseline",
        default=defaults["baseline"],
        help="'first' (each slice's first window) or START/END in ISO 8601",
    )
    monitor.add_argument(
        "--min-accuracy", type=float, help="alert when a window's upper bound is below this"
    )
    monitor.add_argument(
        "--max-drop", type=float, help="alert when the estimate drops this far below baseline"
    )
    monitor.add_argument(
        "--min-responses",
        type=int,
        default=defaults["min_responses"],
        help="smaller windows: no alert",
    )
    monitor.add_argument("--out", type=Path, required=True, help="output folder")

    label = commands.add_parser(
        "label", help="choose responses to label per slice and write the CSV to fill in"
    )
    label.add_argument(
        "scored", type=Path, help="the folder `score --out` wrote, or its responses.parquet"
    )
    label.add_argument("--per-slice", type=int, default=20, help="responses to label per slice")
    label.add_argument(
        "--strategy",
        choices=("stratified",),
        default="stratified",
        help="stratified: one response from each of N equal bins of p(correct) per slice",
    )
    label.add_argument("--seed", type=int, default=0)
    label.add_argument("--out", type=Path, required=True, help="the CSV to write")
    label.add_argument("--force", action="store_true", help="overwrite an existing --out")

    proxy = commands.add_parser(
        "proxy",
        help="an OpenAI-compatible pass-through that scores every response (/metrics)",
    )
    defaults = schema_defaults("proxy")  # the config's proxy: block
    proxy.add_argument(
        "--upstream", required=True, help="the server's URL, e.g. http://127.0.0.1:8080"
    )
    proxy.add_argument("--estimator", required=True, type=Path, help="a saved .skops estimator")
    proxy.add_argument("--listen", default=defaults["listen"], help="HOST:PORT to listen on")
    where = proxy.add_mutually_exclusive_group()
    where.add_argument("--slice-header", help="the request header that names the slice")
    where.add_argument(
        "--slice-field", help="dotted path of the slice key in the request body (metadata.tenant)"
    )
    proxy.add_argument(
        "--log-dir",
        type=Path,
        default=Path(defaults["log_dir"]),
        help="folder of the rotating feature log (score and monitor read its files)",
    )
    proxy.add_argument(
        "--window",
        type=float,
        default=defaults["window_s"],
        help="seconds of the rolling window of the /metrics estimates",
    )
    proxy.add_argument(
        "--rotate-mb", type=float, default=defaults["rotate_mb"], help="feature-log file size"
    )
    proxy.add_argument(
        "--upstream-timeout",
        type=float,
        default=defaults["upstream_timeout_s"],
        help="seconds of upstream silence before the proxy answers 504",
    )
    proxy.add_argument(
        "--logprobs-mode",
        choices=("raw", "processed"),
        default=defaults["logprobs_mode"],
        help="what the upstream's log-probs are (default: the estimator's; llama-server: raw, "
        "vLLM: raw with --logprobs-mode raw_logprobs)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return train_command(args)
        if args.command == "inspect":
            return inspect_command(args)
        if args.command == "recalibrate":
            return recalibrate_command(args)
        if args.command == "label":
            return label_command(args)
        if args.command == "proxy":
            return proxy_command(args)
        check_out(getattr(args, "out", None))  # before any work: a refusal costs nothing
        if args.command == "score":
            return score_command(args)
        return monitor_command(args)
    except (ValueError, OSError) as error:  # TrafficError is a ValueError
        print(f"entropy-sentinel {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def check_out(out: Path | None) -> None:
    """``--out`` must be a folder this process can write into: made and tried before any work."""
    import tempfile

    from entropy_sentinel.serve.logs import TrafficError

    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise TrafficError(f"--out {out}: is a file, not a folder; name a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise TrafficError(
            f"--out {out}: cannot write there ({reason}); choose a folder you can write to"
        ) from None


def _estimator(path: Path, *, metadata_only: bool = False):
    """The saved estimator at ``path`` (or only its metadata: no scikit-learn to import)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such estimator; the workflow writes them to "
            "results/evaluation/MODEL/estimator.skops"
        )
    if metadata_only:
        from entropy_sentinel.estimate.saved import read_metadata

        return read_metadata(path)
    from entropy_sentinel.estimate.classifier import load_estimator

    return load_estimator(path)


def _format(args):
    from entropy_sentinel.serve.logs import LogFormat

    return LogFormat(
        response_field=args.response_field,
        slice_field=args.slice_field,
        time_field=args.time_field,
        id_field=args.id_field,
        request_field=args.request_field,
        logprobs_mode=args.logprobs_mode,
    )


def train_command(args) -> int:
    from entropy_sentinel.config.loading import ConfigError, parse_settings, validate_section
    from entropy_sentinel.estimate.classifier import feature_names
    from entropy_sentinel.evaluate.protocol import DEPLOYED, clean_features, fit_deployed

    _skops_out(args.out)
    settings = parse_settings(args.set)
    frame, spec, provenance, slice_by = _labelled_rows(args, args.features)
    rows, dropped = clean_features(frame)
    try:
        config = validate_section(
            "estimator", {"slice_by": slice_by, "train_slices": ["*"], **settings}
        )
    except ConfigError as error:
        raise ValueError(f"--set: {error}") from None
    provenance = {**provenance, **dropped.as_dict()}
    missing = [c for c in feature_names(config["features"]) or () if c not in rows]
    if missing:
        raise ValueError(
            f"{args.features[0]}: no feature columns {missing} for features={config['features']}; "
            "choose features the rows hold (--set features=17D), or log them (a proxy feature "
            "log holds those of the proxy's estimator)"
        )
    panel, estimator = fit_deployed(rows, slice_by, config, spec, provenance, args.jobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    estimator.save(args.out)
    interval = panel.intervals_.get(DEPLOYED[estimator.slice_estimate])
    print(
        f"trained on {len(rows)} rows of {rows[slice_by].nunique()} slices "
        f"({dropped.ungraded} ungraded and {dropped.empty} empty dropped); wrote {args.out}\n"
        f"interval: {interval.covers if interval else 'none (no training unit could be left out)'}"
        f"\nsettings: {_describe_settings(estimator.regime_.settings)}"
    )
    return 0


def recalibrate_command(args) -> int:
    from entropy_sentinel.estimate.recalibrate import readout, recalibrate
    from entropy_sentinel.estimate.regime import recorded_settings
    from entropy_sentinel.evaluate.protocol import clean_features
    from entropy_sentinel.provenance import sha256_file

    _skops_out(args.out)  # before loading the estimator: a refusal costs nothing
    estimator = _estimator(args.estimator)
    frame, spec, provenance, slice_by = _labelled_rows(args, args.logs, estimator)
    if all(path.suffix == ".parquet" for path in args.logs):  # graded rows, defined features
        frame, _ = clean_features(frame)
    rows = frame[frame["correct"].notna()]
    if not len(rows):
        raise ValueError(f"{args.labels or args.logs[0]}: no labelled response to recalibrate on")
    settings = recorded_settings(provenance)
    provenance.pop("settings", None)
    provenance["estimator"] = {str(args.estimator): sha256_file(args.estimator)}
    new = recalibrate(
        estimator,
        rows,
        rows["correct"].to_numpy(dtype=int),
        rows[slice_by].astype(str).to_numpy(),
        settings=settings,
        spec=spec,
        provenance=provenance,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new.save(args.out)
    record = new.provenance_["recalibrated"]
    print(
        f"recalibrated on {record['n_rows']} labelled rows of {len(record['slices'])} slices "
        f"(accuracy {record['accuracy']:.3f}; the estimator read {record['estimate_before']:.3f})"
        f"; wrote {args.out}\nreadout: {_describe_readout(readout(estimator))} -> "
        f"{_describe_readout(readout(new))} (the classifier is unchanged)\n"
        f"settings: {_describe_settings(settings)}"
    )
    return 0


def _describe_readout(readout: dict) -> str:
    if "atc_threshold" in readout:
        return f"ATC threshold {readout['atc_threshold']['t']:.4f}"
    a, b = readout["slice_map"]
    return f"{a:+.4f} + {b:.4f} * p"


def _describe_settings(settings: dict | None) -> str:
    if not settings:
        return "unrecorded (the regime check compares features only; slices are never `same`)"
    return ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)


def _labelled_rows(args, paths: list[Path], estimator=None):
    """Labelled rows for `train` (``estimator`` None) or `recalibrate`: feature Parquet files
    (labels in `correct`) or traffic logs joined with --labels. Returns the rows, their feature
    spec, their provenance and the column of their slice."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    if all(path.suffix == ".parquet" for path in paths):
        if args.labels is not None:
            raise ValueError(
                "--labels is for traffic logs: a feature Parquet carries its labels in `correct`"
            )
        return _parquet_rows(args, paths)
    return _log_rows(args, paths, estimator)


def _skops_out(out: Path) -> None:
    if out.suffix != ".skops" or out.is_dir():
        raise ValueError(f"--out {out}: name a .skops file to write")


def _parquet_rows(args, paths: list[Path]):
    """Feature Parquet files of the workflow or a study export: rows, spec, provenance."""
    import pandas as pd

    from entropy_sentinel.evaluate.protocol import SLICE_BY
    from entropy_sentinel.features.compute import read_feature_spec
    from entropy_sentinel.provenance import read_provenance, sha256_file

    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    slice_field = args.slice_field or "benchmark"
    if slice_field not in SLICE_BY:
        raise ValueError(
            f"--slice-field {slice_field}: a feature Parquet is sliced by "
            f"{' or '.join(SLICE_BY[:2])}"
        )
    for column in ("correct", slice_field):
        if column not in frame:
            raise ValueError(
                f"{paths[0]}: no column {column!r} (a feature Parquet of "
                "the workflow's features rule or of a study export has it)"
            )
    generation = [read_provenance(p).get("generation") or _study_generation(p) for p in paths]
    provenance = {
        "features": {str(p): sha256_file(p) for p in paths},
        "generation": next((g for g in generation if g), None),
    }
    return frame, read_feature_spec(paths), provenance, slice_field


def _log_rows(args, paths: list[Path], estimator=None):
    """Traffic logs joined with a labels CSV: the features of every labelled response (all of
    them, as at training in the workflow; with ``estimator``, its features as it scores them),
    its slice, and the settings of its requests."""
    import pandas as pd

    from entropy_sentinel.features.compute import FeatureSpec
    from entropy_sentinel.provenance import sha256_file
    from entropy_sentinel.serve.feature_log import is_feature_log, read_feature_log
    from entropy_sentinel.serve.logs import LogFormat, read_log
    from entropy_sentinel.serve.scoring import batch_features

    if args.labels is None:
        raise ValueError(
            "traffic logs carry no labels: pass --labels CSV (id and correct per response; "
            "`entropy-sentinel label` writes one to fill in)"
        )
    fmt = LogFormat(
        response_field=args.response_field,
        slice_field=args.slice_field,
        id_field=args.id_field,
        request_field=args.request_field,
        logprobs_mode=args.logprobs_mode,
    )
    if estimator is not None:  # its width and log-prob kind, checked as `score` checks them
        from entropy_sentinel.estimate.classifier import feature_names
        from entropy_sentinel.features.compute import FEATURE_NAMES
        from entropy_sentinel.serve.monitor import score_logs

        keep = ("settings", *(feature_names(estimator.features) or FEATURE_NAMES))
        skipped_at: dict[str, list[str]] = {}
        frame, skipped = score_logs(estimator, paths, fmt, skipped_at=skipped_at, keep=keep)
        _report_skipped(skipped, skipped_at)
        spec = estimator.feature_spec_
    else:
        frames, specs = [], set()
        for path in paths:
            if is_feature_log(path):  # the proxy's: its features, as the proxy computed them
                header, meta, features, batch = read_feature_log(path)
                spec = FeatureSpec.from_dict(header["feature_spec"])
                _report_skipped(batch.skipped, batch.skipped_at)
            else:
                batch = read_log(path, fmt, None)
                spec = FeatureSpec(k=batch.k, logprobs_mode=batch.logprobs_mode)
                features, meta = batch_features(batch, spec, answer=True), batch.meta
            specs.add(json.dumps(spec.as_dict(), sort_keys=True))
            frames.append(pd.concat([meta.reset_index(drop=True), features], axis=1))
        if len(specs) > 1:
            raise ValueError(f"the logs differ in top-k width or log-prob kind: {sorted(specs)}")
        frame = pd.concat(frames, ignore_index=True)
        spec = FeatureSpec.from_dict(json.loads(specs.pop()))
    labels = _labels(args, frame["id"])
    frame = frame.merge(labels, on="id", how="left")
    distinct = frame.loc[frame["correct"].notna(), "settings"].dropna().unique()
    provenance = {
        "logs": {str(p): sha256_file(p) for p in paths},
        "labels": {str(args.labels): sha256_file(args.labels)},
        "settings": json.loads(distinct[0]) if len(distinct) == 1 else None,
    }
    if len(distinct) > 1:
        print(
            f"{args.command}: the labelled responses were made with {len(distinct)} different "
            "generation settings; none is recorded (the regime check compares features only)",
            file=sys.stderr,
        )
    return frame, spec, provenance, "slice"


def _labels(args, known_ids):
    """The labels CSV (its ``id`` column) as id -> correct; bad rows reported on stderr."""
    from entropy_sentinel.serve.labelling import read_labels

    found = read_labels(args.labels, "id", args.label_field, known_ids=known_ids)
    _report_skipped(found.skipped, found.skipped_at, what="labels")
    if not found.labels["correct"].notna().any():
        raise ValueError(f"{args.labels}: no labelled response (every correct cell is empty)")
    return found.labels


def _study_generation(features: Path) -> dict | None:
    """The generation settings of a study folder's features (its provenance.json's config)."""
    from entropy_sentinel.evaluate.study import study_generation

    generation = study_generation(features.parent)
    return {"study": str(features.parent), **generation} if generation else None


def inspect_command(args) -> int:
    meta = _estimator(args.estimator, metadata_only=True)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    spec = meta["feature_spec"]
    interval = meta.get("interval") or {}
    provenance = meta.get("provenance") or {}
    lines = [
        f"estimator      {args.estimator}",
        f"classifier     {meta['config']['classifier']} (calibrate={meta['config']['calibrate']},"
        f" balance={meta['config']['balance']})",
        f"features       {meta['config']['features']}: {', '.join(meta['feature_names'] or [])}",
        f"top-k          {spec.get('k') or 'unknown'} top log-probs per token",
        f"logprobs mode  {spec.get('logprobs_mode') or 'unknown'}",
        f"entropy        {spec['entropy']} ({spec['definitions']} definitions, "
        f"segment {spec['segment']})",
        f"interval       {_describe_interval(interval)}",
        "trained on     "
        + ", ".join(f"{k}={v}" for k, v in provenance.items() if not isinstance(v, dict | list)),
    ]
    recalibrated = provenance.get("recalibrated")
    if recalibrated:
        lines.append(
            f"recalibrated   on {recalibrated['n_rows']} labelled rows of "
            f"{', '.join(recalibrated['slices'] or ['one slice'])} (accuracy "
            f"{recalibrated['accuracy']:.3f}) at {recalibrated['recalibrated_at']}: "
            f"{_describe_readout(recalibrated['readout_before'])} -> "
            f"{_describe_readout(recalibrated['readout'])}"
        )
    print("\n".join(lines))
    return 0


def _describe_interval(interval: dict) -> str:
    if not interval:
        return "none (point estimates only)"
    from entropy_sentinel.estimate.intervals import SliceInterval

    return SliceInterval.from_dict(interval).covers


def score_command(args) -> int:
    import pandas as pd

    from entropy_sentinel.provenance import jsonable, now, sha256_file, write_json, write_parquet
    from entropy_sentinel.serve.monitor import score_logs
    from entropy_sentinel.serve.scoring import (
        RESPONSE_COLUMNS,
        SLICE_COLUMNS,
        slice_table,
        with_labels,
    )

    estimator = _estimator(args.estimator)
    skipped_at: dict[str, list[str]] = {}
    scored, skipped = score_logs(estimator, args.logs, _format(args), skipped_at=skipped_at)
    slices, regimes = slice_table(estimator, scored, args.under_shift)
    slices.insert(2, "n_labels", 0)
    if args.labels:
        slices = with_labels(slices, scored, _labels(args, scored["id"]))
    slices = slices[[*SLICE_COLUMNS, *(c for c in slices if c not in SLICE_COLUMNS)]]
    _report_skipped(skipped, skipped_at)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(slices.drop(columns="covers").to_string(index=False))
    print(f"interval: {slices['covers'].iloc[-1]}")
    _report_regimes(regimes, args.under_shift or getattr(estimator.regime_, "under_shift", None))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {
            "responses_scored": len(scored),
            "skipped": skipped,
            "skipped_at": skipped_at,
            "estimator": {"path": str(args.estimator), "sha256": sha256_file(args.estimator)},
            "feature_spec": estimator.feature_spec_.as_dict(),
            "logs": {str(p): sha256_file(p) for p in args.logs},
            "regime": {
                "trained": estimator.regime_.as_dict() if estimator.regime_ else None,
                "slices": regimes,
            },
            "written_at": now(),
        }
        write_parquet(
            scored[list(RESPONSE_COLUMNS)], args.out / "responses.parquet", jsonable(summary)
        )
        slices.to_csv(args.out / "slices.csv", index=False)
        write_json(jsonable(summary), args.out / "summary.json")
    return 0


def label_command(args) -> int:
    from entropy_sentinel.serve.labelling import propose, read_scored, write_plan

    plan, skipped = propose(read_scored(args.scored), args.per_slice, args.strategy, args.seed)
    _report_skipped(skipped, {})
    write_plan(plan, args.out, force=args.force)
    slices = plan["slice"].nunique()
    print(
        f"{len(plan)} responses of {slices} slices to label; fill the correct column of "
        f"{args.out} with 1 (correct) or 0 (wrong) and pass it to score --labels"
    )
    return 0


def monitor_command(args) -> int:
    from entropy_sentinel.serve.monitor import AlertRules, Baseline, alert_lines, run_monitor

    windows, alerts = run_monitor(
        logs=args.logs,
        estimator_path=args.estimator,
        fmt=_format(args),
        window=args.window,
        baseline=Baseline.parse(args.baseline),
        rules=AlertRules(args.min_accuracy, args.max_drop, args.min_responses),
        out_dir=args.out,
        under_shift=args.under_shift,
        labels=(lambda ids: _labels(args, ids)) if args.labels else None,
    )
    summary = json.loads((args.out / "summary.json").read_text())
    _report_skipped(summary["skipped"], summary.get("skipped_at", {}))
    print(f"{len(windows)} slice windows, {len(alerts)} alerts; see {args.out / 'monitor.html'}")
    for line in alert_lines(alerts):
        print(line, file=sys.stderr)
    return EXIT_ALERT if alerts else 0


def _report_regimes(regimes: dict, under_shift: str | None) -> None:
    """Say on stderr which slices were made unlike the training rows, and why."""
    for name, evidence in regimes.items():
        reasons = []
        if evidence.get("settings") == "shifted":
            keys = ", ".join(
                f"{key} {trained} -> {served}"
                for key, (trained, served) in evidence["settings_differ"].items()
            )
            reasons.append(f"generation settings differ ({keys})")
        if evidence.get("features") == "shifted":
            reasons.append(
                f"{evidence['features_outside_share']:.0%} of responses lie outside the training "
                f"rows' features (held-out training slices: at most "
                f"{evidence['features_threshold']:.0%})"
            )
        if reasons:
            action = "withheld" if under_shift == "withhold" else "widened"
            print(f"regime: slice {name} is shifted: {'; '.join(reasons)}", file=sys.stderr)
            print(f"  its interval is {action} (see summary.json regime)", file=sys.stderr)


def proxy_command(args) -> int:
    import logging

    from entropy_sentinel.serve.proxy import ProxyConfig, serve

    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--listen {args.listen!r}: write HOST:PORT, e.g. 127.0.0.1:8787")
    if not args.upstream.startswith(("http://", "https://")):
        raise ValueError(f"--upstream {args.upstream!r}: give a URL, e.g. http://127.0.0.1:8080")
    for name in ("window", "rotate_mb", "upstream_timeout"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be > 0")
    _estimator(args.estimator)  # a missing file: exit 2 before binding the port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ProxyConfig(
        upstream=args.upstream,
        estimator=args.estimator,
        log_dir=args.log_dir,
        slice_header=args.slice_header,
        slice_field=args.slice_field,
        window_s=args.window,
        rotate_bytes=int(args.rotate_mb * (1 << 20)),
        upstream_timeout_s=args.upstream_timeout,
        logprobs_mode=args.logprobs_mode,
    )
    serve(config, args.listen)
    return 0


def _report_skipped(skipped: dict, skipped_at: dict, what: str = "responses") -> None:
    """Counts on one line, then where: the first few file:line of each reason."""
    left_out = {reason: n for reason, n in skipped.items() if n}
    if left_out:
        listing = ", ".join(f"{n} {reason}" for reason, n in left_out.items())
        print(f"skipped {what}: {listing}", file=sys.stderr)
        for reason in left_out:
            for where in skipped_at.get(reason, []):
                print(f"  skipped ({reason}) {where}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
