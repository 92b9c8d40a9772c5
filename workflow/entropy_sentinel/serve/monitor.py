"""Monitoring: estimated accuracy per slice over time windows, against a baseline window.

Responses are scored (``scoring.score``) and grouped by slice and window (hour or day). Each
window's estimate and interval are compared with the slice's baseline (its first window, or a
given period). An alert is raised when a window's upper bound falls below ``min_accuracy``
(the slice is confidently worse than required), or when its estimate drops more than
``max_drop`` below the baseline's. Windows with fewer than ``min_responses`` responses are
reported and never alerted on. Slice ``*`` is all traffic together.

Outputs (``run_monitor``): ``windows.csv``, ``alerts.json`` (a list of alert records),
``summary.json`` (counts and provenance) and ``monitor.html`` (one time-series chart per slice,
self-contained SVG).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.provenance import jsonable, now, sha256_file, write_json, write_parquet
from entropy_sentinel.serve.feature_log import is_feature_log, score_feature_log
from entropy_sentinel.serve.logs import LogFormat, TrafficError, nothing_to_score, read_log
from entropy_sentinel.serve.scoring import RESPONSE_COLUMNS, score

WINDOWS = {"hour": "h", "day": "D"}


@dataclass(frozen=True)
class AlertRules:
    min_accuracy: float | None = None  # alert when a window's upper bound is below this
    max_drop: float | None = None  # alert when the estimate falls this far below the baseline
    min_responses: int = 20  # smaller windows are shown, never alerted on


@dataclass(frozen=True)
class Baseline:
    """The reference period: each slice's first window, or ``[start, end)``."""

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None

    @classmethod
    def parse(cls, text: str | None) -> Baseline:
        """``first`` (or None), or ``START/END`` in ISO 8601 (UTC unless a zone is given)."""
        if text in (None, "first"):
            return cls()
        start, sep, end = text.partition("/")
        if not sep:
            raise ValueError(f"baseline {text!r}: use 'first' or START/END (ISO 8601)")
        return cls(_utc(start), _utc(end))

    def describe(self) -> str:
        return "first window" if self.start is None else f"{self.start}/{self.end}"


def _utc(text: str) -> pd.Timestamp:
    stamp = pd.Timestamp(text)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def score_logs(
    estimator, paths, fmt: LogFormat, *, require_time: bool = False, skipped_at: dict | None = None
) -> tuple[pd.DataFrame, dict]:
    """Scored responses of every log (with a ``log`` column) and the skipped counts; the first
    ``file:line`` of each reason go to ``skipped_at``. Refused only when nothing is left."""
    frames, skipped, batches = [], {}, []
    for path in paths:
        if is_feature_log(path):  # the proxy's: features already computed
            scored, batch = score_feature_log(estimator, Path(path))
            frames.append(scored.assign(log=str(path)))
        else:
            batch = read_log(
                path, fmt, estimator.feature_spec_.k, require_time=require_time, allow_empty=True
            )
            if len(batch):
                scored = score(estimator, batch, str(path))
                frames.append(scored.assign(log=str(path)))
        batches.append(batch)
        for reason, count in batch.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
            if skipped_at is not None:
                skipped_at.setdefault(reason, []).extend(batch.skipped_at.get(reason, []))
    if not sum(map(len, frames)):
        raise TrafficError(nothing_to_score(batches, paths))
    return pd.concat(frames, ignore_index=True), skipped


def window_table(estimator, scored: pd.DataFrame, window: str, baseline: Baseline) -> pd.DataFrame:
    """One row per (slice, window): n, estimate, interval, baseline estimate and drop."""
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: choose one of {sorted(WINDOWS)}")
    if scored["time"].isna().any():
        missing = int(scored["time"].isna().sum())
        raise TrafficError(
            f"{missing} scored responses have no time: point --time-field (config "
            "monitor.*.time_field) at each record's timestamp"
        )
    scored = scored.assign(window=scored["time"].dt.floor(WINDOWS[window]))
    everything = scored.assign(slice="*")
    rows = []
    for name, group in pd.concat([scored, everything]).groupby("slice", sort=True):
        if baseline.start is None:
            reference = group[group["window"] == group["window"].min()]
        else:
            inside = (group["time"] >= baseline.start) & (group["time"] < baseline.end)
            reference = group[inside]
        base = estimator.estimate_from_rows(reference["row_estimate"])
        for start, members in group.groupby("window", sort=True):
            estimate = estimator.estimate_from_rows(members["row_estimate"])
            rows.append(
                {
                    "slice": name,
                    "window_start": start,
                    **estimate.as_dict(),
                    "baseline_point": base.point,
                    "baseline_n": base.n,
                    "drop": base.point - estimate.point,
                }
            )
    return pd.DataFrame(rows)


def find_alerts(windows: pd.DataFrame, rules: AlertRules) -> list[dict]:
    """Alert records, one per (window, broken rule)."""
    alerts = []
    for row in windows.itertuples(index=False):
        if row.n < rules.min_responses:
            continue
        broken = []
        if rules.min_accuracy is not None and row.high < rules.min_accuracy:
            broken.append(
                (
                    "below_min_accuracy",
                    f"upper bound {row.high:.3f} < min_accuracy {rules.min_accuracy}",
                )
            )
        if rules.max_drop is not None and row.drop > rules.max_drop:
            broken.append(
                (
                    "drop_from_baseline",
                    f"estimate {row.point:.3f} is {row.drop:.3f} below the baseline "
                    f"{row.baseline_point:.3f} (max_drop {rules.max_drop})",
                )
            )
        for rule, message in broken:
            alerts.append(
                {
                    "alert": rule,
                    "slice": row.slice,
                    "window_start": row.window_start.isoformat(),
                    "n": int(row.n),
                    "estimate": row.point,
                    "low": row.low,
                    "high": row.high,
                    "level": row.level,
                    "baseline": row.baseline_point,
                    "message": f"slice {row.slice} window {row.window_start:%Y-%m-%d %H:%M}: "
                    + message,
                }
            )
    return alerts


def run_monitor(
    *,
    logs,
    estimator_path,
    fmt: LogFormat,
    window: str,
    baseline: Baseline,
    rules: AlertRules,
    out_dir,
) -> tuple[pd.DataFrame, list[dict]]:
    """Score the logs, build the window table, find alerts and write every output."""
    from entropy_sentinel.estimate.classifier import load_estimator

    estimator = load_estimator(estimator_path)
    skipped_at: dict[str, list[str]] = {}
    scored, skipped = score_logs(estimator, logs, fmt, require_time=True, skipped_at=skipped_at)
    windows = window_table(estimator, scored, window, baseline)
    alerts = find_alerts(windows, rules)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    windows.to_csv(out / "windows.csv", index=False)
    window_start = scored["time"].dt.floor(WINDOWS[window]).rename("window_start")
    responses = pd.concat([scored[list(RESPONSE_COLUMNS)], window_start], axis=1)
    write_parquet(responses, out / "responses.parquet", {"estimator": str(estimator_path)})
    write_json(jsonable(alerts), out / "alerts.json")
    summary = {
        "responses_scored": len(scored),
        "skipped": skipped,
        "skipped_at": skipped_at,
        "window": window,
        "baseline": baseline.describe(),
        "rules": asdict(rules),
        "format": asdict(fmt),
        "estimator": {"path": str(estimator_path), "sha256": sha256_file(estimator_path)},
        "feature_spec": estimator.feature_spec_.as_dict(),
        "logs": {str(p): sha256_file(p) for p in logs},
        "alerts": len(alerts),
        "written_at": now(),
    }
    write_json(jsonable(summary), out / "summary.json")
    (out / "monitor.html").write_text(
        html_page(windows, alerts, rules, title=f"Entropy Sentinel monitor: {out.name}")
    )
    return windows, alerts


# ---------------------------------------------------------------- HTML


def html_page(windows: pd.DataFrame, alerts: list[dict], rules: AlertRules, title: str) -> str:
    """A self-contained page: one chart per slice (estimate, interval band, baseline, rules)."""
    alerted = {(a["slice"], a["window_start"]) for a in alerts}
    charts = [
        _chart(name, group.sort_values("window_start"), alerted, rules)
        for name, group in windows.groupby("slice", sort=True)
    ]
    rows = "".join(
        f"<tr><td>{html.escape(a['slice'])}</td><td>{a['window_start'][:16]}</td>"
        f"<td>{a['alert']}</td><td>{html.escape(a['message'])}</td></tr>"
        for a in alerts
    )
    table = (
        f"<table><tr><th>slice</th><th>window</th><th>alert</th><th>detail</th></tr>{rows}</table>"
        if alerts
        else "<p>No alerts.</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}
.chart{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.legend span{{margin-right:1.5em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Estimated accuracy per window with its interval ({_level(windows)}); dashed: the slice's
baseline estimate; red line: min_accuracy; red points: alerts.</p>
<h2>Slices</h2>{"".join(charts)}
<h2>Alerts ({len(alerts)})</h2>{table}
</body></html>
"""


def _level(windows: pd.DataFrame) -> str:
    levels = windows["level"].dropna().unique()
    covers = windows["covers"].dropna().unique()
    level = f"{levels[0]:.0%} level" if len(levels) else "no interval"
    return f"{level}; {html.escape(str(covers[0]))}" if len(covers) else level


def _chart(name: str, group: pd.DataFrame, alerted: set, rules: AlertRules) -> str:
    width, height, pad = 520, 240, 40
    times = group["window_start"].map(pd.Timestamp.timestamp).to_numpy(dtype=float)
    t0, t1 = times.min(), times.max()
    span = (t1 - t0) or 1.0

    def x(t):
        return pad + (t - t0) / span * (width - 2 * pad) if t1 > t0 else width / 2

    def y(v):
        return height - pad - float(np.clip(v, 0, 1)) * (height - 2 * pad)

    parts = [
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
        'fill="none" stroke="#999"/>'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<text x="{pad - 6}" y="{y(tick) + 4}" font-size="10" text-anchor="end">'
            f"{tick:.2f}</text>"
        )
    has_band = group["low"].notna().all() and group["high"].notna().all()
    if has_band:
        upper = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, group["high"], strict=True)]
        lower = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, group["low"], strict=True)]
        parts.append(
            f'<polygon points="{" ".join(upper + lower[::-1])}" fill="#9ecae1" opacity="0.5"/>'
        )
    baseline = group["baseline_point"].iloc[0]
    parts.append(
        f'<line x1="{pad}" x2="{width - pad}" y1="{y(baseline):.1f}" y2="{y(baseline):.1f}" '
        'stroke="#555" stroke-dasharray="5,4"/>'
    )
    if rules.min_accuracy is not None:
        level = y(rules.min_accuracy)
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{level:.1f}" y2="{level:.1f}" '
            'stroke="#d62728"/>'
        )
    points = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, group["point"], strict=True)]
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#08519c"/>')
    for t, row in zip(times, group.itertuples(index=False), strict=True):
        if has_band:  # an error bar too: a band of one window has no width
            parts.append(
                f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{y(row.low):.1f}" '
                f'y2="{y(row.high):.1f}" stroke="#6baed6" stroke-width="2"/>'
            )
        bad = (row.slice, row.window_start.isoformat()) in alerted
        tip = f"{row.window_start:%Y-%m-%d %H:%M}: {row.point:.3f} [{row.low:.3f}, {row.high:.3f}]"
        parts.append(
            f'<circle cx="{x(t):.1f}" cy="{y(row.point):.1f}" r="{5 if bad else 3}" '
            f'fill="{"#d62728" if bad else "#08519c"}"><title>{tip}, n={row.n}</title></circle>'
        )
    first, last = group["window_start"].iloc[0], group["window_start"].iloc[-1]
    parts.append(
        f'<text x="{pad}" y="{height - 12}" font-size="10">{first:%Y-%m-%d %H:%M}</text>'
        f'<text x="{width - pad}" y="{height - 12}" font-size="10" text-anchor="end">'
        f"{last:%Y-%m-%d %H:%M}</text>"
    )
    label = "all traffic" if name == "*" else f"slice {name}"
    return (
        f'<div class="chart"><h3>{html.escape(label)}</h3>'
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(label)}">'
        f"{''.join(parts)}</svg></div>"
    )


def alert_lines(alerts: list[dict]) -> list[str]:
    """One stderr line per alert, JSON so that cron and CI can parse it."""
    return [f"ALERT {json.dumps(jsonable(a))}" for a in alerts]
