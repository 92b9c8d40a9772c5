"""``entropy-sentinel``: score served traffic with a saved estimator, monitor it, inspect one.

    entropy-sentinel train FEATURES.parquet --slice-field benchmark --out EST.skops
    entropy-sentinel inspect results/evaluation/MODEL/estimator.skops
    entropy-sentinel score LOG.jsonl --estimator EST --response-field response \\
        --slice-field tenant --logprobs-mode raw --out scored/
    entropy-sentinel monitor LOG.jsonl ... --estimator EST --window hour --min-accuracy 0.6 \\
        --max-drop 0.1 --out monitor/
    entropy-sentinel proxy --upstream http://127.0.0.1:8080 --estimator EST \\
        --slice-header X-Slice --listen 127.0.0.1:8787

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
        "--logprobs-mode",
        choices=("raw", "processed"),
        help="what the server's log-probs are (vLLM --logprobs-mode raw_logprobs and "
        "llama-server: raw); checked against the estimator's",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entropy-sentinel",
        description="Label-free accuracy estimates for served LLM traffic.",
        epilog="Exit status: 0 done, 2 bad input, 3 monitor alerts.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="fit an estimator with its interval on labelled feature rows"
    )
    train.add_argument(
        "features", nargs="+", type=Path, help="feature Parquet files (labels in `correct`)"
    )
    train.add_argument(
        "--slice-field",
        choices=("benchmark", "domain"),
        default="benchmark",
        help="the column that names each row's slice (the interval is learnt across slices)",
    )
    train.add_argument("--out", type=Path, required=True, help="the .skops file to write")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an estimator setting of the config schema, e.g. --set classifier=logistic_regression",
    )
    train.add_argument("--jobs", type=int, default=1, help="parallel refits for the interval")

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
    from entropy_sentinel.serve.logs import TrafficError

    try:
        if args.command == "train":
            return train_command(args)
        if args.command == "inspect":
            return inspect_command(args)
        if args.command == "proxy":
            return proxy_command(args)
        check_out(getattr(args, "out", None))  # before any work: a refusal costs nothing
        if args.command == "score":
            return score_command(args)
        return monitor_command(args)
    except (TrafficError, ValueError, OSError) as error:
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


def _estimator(path: Path):
    from entropy_sentinel.estimate.classifier import load_estimator

    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such estimator; the workflow writes them to "
            "results/evaluation/MODEL/estimator.skops"
        )
    return load_estimator(path)


def _format(args):
    from entropy_sentinel.serve.logs import LogFormat

    return LogFormat(
        response_field=args.response_field,
        slice_field=args.slice_field,
        time_field=args.time_field,
        id_field=args.id_field,
        logprobs_mode=args.logprobs_mode,
    )


def train_command(args) -> int:
    import pandas as pd

    from entropy_sentinel.config.loading import ConfigError, parse_settings, validate_section
    from entropy_sentinel.evaluate.protocol import DEPLOYED, clean_features, fit_deployed
    from entropy_sentinel.features.compute import read_feature_spec
    from entropy_sentinel.provenance import read_provenance, sha256_file

    if args.out.suffix != ".skops" or args.out.is_dir():
        raise ValueError(f"--out {args.out}: name a .skops file to write")
    settings = parse_settings(args.set)
    for path in args.features:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such feature file")
    frame = pd.concat([pd.read_parquet(p) for p in args.features], ignore_index=True)
    for column in ("correct", args.slice_field):
        if column not in frame:
            raise ValueError(
                f"{args.features[0]}: no column {column!r} (a feature Parquet of "
                "the workflow's features rule or of a study export has it)"
            )
    rows, dropped = clean_features(frame)
    try:
        config = validate_section(
            "estimator",
            {"slice_by": args.slice_field, "train_slices": ["*"], **settings},
        )
    except ConfigError as error:
        raise ValueError(f"--set: {error}") from None
    generation = [
        read_provenance(p).get("generation") or _study_generation(p) for p in args.features
    ]
    provenance = {
        "features": {str(p): sha256_file(p) for p in args.features},
        "generation": next((g for g in generation if g), None),
        **dropped.as_dict(),
    }
    panel, estimator = fit_deployed(
        rows, args.slice_field, config, read_feature_spec(args.features), provenance, args.jobs
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    estimator.save(args.out)
    interval = panel.intervals_.get(DEPLOYED[estimator.slice_estimate])
    print(
        f"trained on {len(rows)} rows of {rows[args.slice_field].nunique()} slices "
        f"({dropped.ungraded} ungraded and {dropped.empty} empty dropped); wrote {args.out}\n"
        f"interval: {interval.covers if interval else 'none (no training unit could be left out)'}"
    )
    return 0


def _study_generation(features: Path) -> dict | None:
    """The generation settings of a study folder's features (its provenance.json's config)."""
    study = features.parent / "provenance.json"
    if not study.is_file():
        return None
    config = json.loads(study.read_text()).get("config") or {}
    return {"study": str(features.parent), **(config.get("generation") or {})}


def inspect_command(args) -> int:
    meta = _estimator(args.estimator).metadata()
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
    from entropy_sentinel.serve.scoring import RESPONSE_COLUMNS, slice_table

    estimator = _estimator(args.estimator)
    skipped_at: dict[str, list[str]] = {}
    scored, skipped = score_logs(estimator, args.logs, _format(args), skipped_at=skipped_at)
    slices = slice_table(estimator, scored)
    _report_skipped(skipped, skipped_at)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(slices.drop(columns="covers").to_string(index=False))
    print(f"interval: {slices['covers'].iloc[-1]}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {
            "responses_scored": len(scored),
            "skipped": skipped,
            "skipped_at": skipped_at,
            "estimator": {"path": str(args.estimator), "sha256": sha256_file(args.estimator)},
            "feature_spec": estimator.feature_spec_.as_dict(),
            "logs": {str(p): sha256_file(p) for p in args.logs},
            "written_at": now(),
        }
        write_parquet(
            scored[list(RESPONSE_COLUMNS)], args.out / "responses.parquet", jsonable(summary)
        )
        slices.to_csv(args.out / "slices.csv", index=False)
        write_json(jsonable(summary), args.out / "summary.json")
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
    )
    summary = json.loads((args.out / "summary.json").read_text())
    _report_skipped(summary["skipped"], summary.get("skipped_at", {}))
    print(f"{len(windows)} slice windows, {len(alerts)} alerts; see {args.out / 'monitor.html'}")
    for line in alert_lines(alerts):
        print(line, file=sys.stderr)
    return EXIT_ALERT if alerts else 0


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


def _report_skipped(skipped: dict, skipped_at: dict) -> None:
    """Counts on one line, then where: the first few file:line of each reason."""
    left_out = {reason: n for reason, n in skipped.items() if n}
    if left_out:
        listing = ", ".join(f"{n} {reason}" for reason, n in left_out.items())
        print(f"skipped responses: {listing}", file=sys.stderr)
        for reason in left_out:
            for where in skipped_at.get(reason, []):
                print(f"  skipped ({reason}) {where}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
