"""Monitoring: estimated accuracy per slice over time windows, against a baseline window.

Responses are scored (``scoring.score``) and grouped by slice and window (hour or day). Each
window's estimate and interval are compared with the slice's baseline (its first window, or a
given period). An alert is raised when a window's upper bound falls below ``min_accuracy``
(the slice is confidently worse than required), or when its estimate drops more than
``max_drop`` below the baseline's. Windows with fewer than ``min_responses`` responses are
reported and never alerted on. Slice ``*`` is all traffic together.

Outputs (``run_monitor``): ``windows.csv``, ``alerts.json`` (a list of alert records),
``summary.json`` (counts and provenance) and ``monitor.html`` (a jinja2 page: one matplotlib
chart per slice as inline SVG, the alerts, and the windows with any extra field as a badge).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from entropy_sentinel.provenance import jsonable, now, sha256_file, write_json, write_parquet
from entropy_sentinel.serve.feature_log import is_feature_log, score_feature_log
from entropy_sentinel.serve.logs import (
    BATCH_BYTES,
    EXAMPLES,
    LogFormat,
    TrafficError,
    iter_log,
    nothing_to_score,
)
from entropy_sentinel.serve.scoring import RESPONSE_COLUMNS, score, slice_table, with_labels

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
    estimator,
    paths,
    fmt: LogFormat,
    *,
    require_time: bool = False,
    skipped_at: dict | None = None,
    batch_bytes: int | None = BATCH_BYTES,
    keep: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, dict]:
    """Scored responses of every log (``RESPONSE_COLUMNS``, and the columns of ``keep``) and
    the skipped counts; the first ``file:line`` of each reason go to ``skipped_at``. Refused
    only when nothing is left.

    Logs are read and scored in bounded batches (``iter_log``): only each response's outputs
    are kept, never the log-probs of the whole log, so memory stays flat in the log's size."""
    frames, skipped, examples = [], {}, {}
    columns = [c for c in RESPONSE_COLUMNS if c != "log"]
    if estimator.regime_ is not None:  # what the regime check reads: settings and features
        columns += ["settings", *estimator.regime_.support.columns]
    columns += [c for c in keep if c not in columns]
    for path in paths:
        first: dict[str, list[str]] = {}  # the first few of each reason, per log
        if is_feature_log(path):  # the proxy's: features already computed
            batches = [score_feature_log(estimator, Path(path))]
        else:
            k = estimator.feature_spec_.k
            batches = (
                (score(estimator, batch, str(path)) if len(batch) else None, batch)
                for batch in iter_log(
                    path, fmt, k, require_time=require_time, batch_bytes=batch_bytes
                )
            )
        for scored, batch in batches:
            if scored is not None and len(scored):
                frames.append(scored[columns].assign(log=str(path)))
            for reason, count in batch.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
                kept = first.setdefault(reason, [])
                kept.extend(batch.skipped_at.get(reason, [])[: EXAMPLES - len(kept)])
        for reason, where in first.items():
            examples.setdefault(reason, []).extend(where)
    if skipped_at is not None:
        skipped_at.update(examples)
    if not sum(map(len, frames)):
        raise TrafficError(nothing_to_score(skipped, examples, paths))
    scored = pd.concat(frames, ignore_index=True)
    return scored[[*RESPONSE_COLUMNS, *(c for c in columns if c not in RESPONSE_COLUMNS)]], skipped


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


def with_regimes(
    estimator, scored: pd.DataFrame, windows: pd.DataFrame, under_shift: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Each window with its slice's regime, checked over the slice's whole log (a window is
    too small for the feature check); a shifted slice's windows widen or withhold their
    interval as ``slice_table`` does. Returns the windows and each slice's evidence."""
    table, evidence = slice_table(estimator, scored, under_shift)
    states = table.set_index("slice")["regime"]
    rows = []
    for row in windows.to_dict("records"):
        regime = states[row["slice"]]
        if estimator.regime_ is not None:
            row = estimator.regime_.adjust(row, regime, under_shift)
        rows.append({**row, "regime": regime})
    return pd.DataFrame(rows, columns=[*windows.columns, "regime"]), evidence


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
    under_shift: str | None = None,
    labels=None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Score the logs, build the window table, find alerts and write every output.
    ``labels``: the scored ids -> their labels (id, correct), for PPI++ per window."""
    from entropy_sentinel.estimate.classifier import load_estimator

    estimator = load_estimator(estimator_path)
    skipped_at: dict[str, list[str]] = {}
    scored, skipped = score_logs(estimator, logs, fmt, require_time=True, skipped_at=skipped_at)
    windows = window_table(estimator, scored, window, baseline)
    windows, regimes = with_regimes(estimator, scored, windows, under_shift)
    if labels is not None:
        windows.insert(windows.columns.get_loc("n") + 1, "n_labels", 0)
        scored_windows = scored.assign(window_start=scored["time"].dt.floor(WINDOWS[window]))
        found = labels(scored["id"])
        windows = with_labels(windows, scored_windows, found, by=("slice", "window_start"))
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
        "regime": {
            "trained": estimator.regime_.as_dict() if estimator.regime_ else None,
            "slices": regimes,
        },
        "written_at": now(),
    }
    write_json(jsonable(summary), out / "summary.json")
    (out / "monitor.html").write_text(
        html_page(windows, alerts, rules, title=f"Entropy Sentinel monitor: {out.name}")
    )
    return windows, alerts


# ---------------------------------------------------------------- HTML

# the window table's own columns; any other per-window field (a regime, a status) is shown
# as a badge in a column of its own
WINDOW_COLUMNS = (
    "slice", "window_start", "n", "n_labels", "point", "low", "high", "level", "covers",
    "baseline_point", "baseline_n", "drop",
)  # fmt: skip

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:2em;color:#222}
.chart{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
.chart svg{width:520px;height:auto}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
tr.alerted td{background:#fde0dd}
.badge{display:inline-block;padding:1px 8px;border-radius:8px;background:#deebf7;font-size:90%}
</style></head>
<body><h1>{{ title }}</h1>
<p>Estimated accuracy per window with its interval ({{ level }}); dashed: the slice's
baseline estimate; red line: min_accuracy; red points: alerts.</p>
<h2>Slices</h2>
{% for chart in charts %}<div class="chart"><h3>{{ chart.label }}</h3>{{ chart.svg | safe }}</div>
{% endfor %}
<h2>Alerts ({{ alerts | length }})</h2>
{% if alerts %}<table id="alerts">
<tr><th>slice</th><th>window</th><th>alert</th><th>detail</th></tr>
{% for a in alerts %}<tr><td>{{ a.slice }}</td><td>{{ a.window_start[:16] }}</td>
<td>{{ a.alert }}</td><td>{{ a.message }}</td></tr>
{% endfor %}</table>{% else %}<p>No alerts.</p>{% endif %}
<h2>Windows</h2>
<table id="windows"><tr><th>slice</th><th>window</th><th>n</th><th>estimate</th>
<th>interval</th><th>baseline</th><th>drop</th>{% for c in extra %}<th>{{ c }}</th>{% endfor %}</tr>
{% for w in windows %}<tr{% if w.alerted %} class="alerted"{% endif %}><td>{{ w.slice }}</td>
<td>{{ w.window }}</td><td>{{ w.n }}</td><td>{{ w.point }}</td><td>{{ w.interval }}</td>
<td>{{ w.baseline }}</td><td>{{ w.drop }}</td>{% for c in extra %}<td>{% if w.extra[c] %}
<span class="badge {{ c }}">{{ w.extra[c] }}</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
</body></html>
"""


def html_page(windows: pd.DataFrame, alerts: list[dict], rules: AlertRules, title: str) -> str:
    """A self-contained page: one chart per slice (estimate, interval band, baseline, rules),
    the alerts, and every window with any extra per-window field as a badge."""
    import jinja2

    alerted = {(a["slice"], a["window_start"]) for a in alerts}
    charts = [
        _chart(name, group.sort_values("window_start"), alerted, rules)
        for name, group in windows.groupby("slice", sort=True)
    ]
    extra = [c for c in windows.columns if c not in WINDOW_COLUMNS]
    rows = [
        {
            "slice": row["slice"],
            "window": f"{row['window_start']:%Y-%m-%d %H:%M}",
            "n": row["n"],
            "point": _num(row["point"]),
            "interval": f"[{_num(row['low'])}, {_num(row['high'])}]",
            "baseline": _num(row["baseline_point"]),
            "drop": _num(row["drop"]),
            "alerted": (row["slice"], row["window_start"].isoformat()) in alerted,
            "extra": {c: "" if pd.isna(row[c]) else str(row[c]) for c in extra},
        }
        for _, row in windows.sort_values(["slice", "window_start"]).iterrows()
    ]
    page = jinja2.Environment(autoescape=True).from_string(PAGE)
    return page.render(
        title=title,
        level=_level(windows),
        charts=charts,
        alerts=alerts,
        windows=rows,
        extra=extra,
    )


def _num(value) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


def _level(windows: pd.DataFrame) -> str:
    levels = windows["level"].dropna().unique()
    covers = windows["covers"].dropna().unique()
    level = f"{levels[0]:.0%} level" if len(levels) else "no interval"
    return f"{level}; {covers[0]}" if len(covers) else level


def _chart(name: str, group: pd.DataFrame, alerted: set, rules: AlertRules) -> dict:
    """One slice's time series as inline SVG: estimate, interval band and bars, baseline,
    min_accuracy, alerted windows in red."""
    from entropy_sentinel.report.charts import pyplot, svg

    label = "all traffic" if name == "*" else f"slice {name}"
    times = group["window_start"].dt.tz_localize(None).to_numpy()
    fig, ax = pyplot().subplots(figsize=(5.2, 2.4))
    if group["low"].notna().all() and group["high"].notna().all():
        ax.fill_between(times, group["low"], group["high"], color="#9ecae1", alpha=0.5, lw=0)
        # an error bar too: a band of one window has no width
        ax.vlines(times, group["low"], group["high"], color="#6baed6", lw=2)
    ax.axhline(group["baseline_point"].iloc[0], color="#555", ls=(0, (5, 4)), lw=1)
    if rules.min_accuracy is not None:
        ax.axhline(rules.min_accuracy, color="#d62728", lw=1)
    ax.plot(times, group["point"], color="#08519c", lw=1)
    bad = [(name, t.isoformat()) in alerted for t in group["window_start"]]
    ax.scatter(
        times,
        group["point"],
        s=[36 if b else 12 for b in bad],
        c=["#d62728" if b else "#08519c" for b in bad],
        zorder=3,
    )
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    return {"label": label, "svg": svg(fig, label)}


def alert_lines(alerts: list[dict]) -> list[str]:
    """One stderr line per alert, JSON so that cron and CI can parse it."""
    return [f"ALERT {json.dumps(jsonable(a))}" for a in alerts]
