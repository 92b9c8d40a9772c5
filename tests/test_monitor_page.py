"""The monitor page (serve.monitor.html_page): one inline matplotlib SVG per slice, the alerts,
and every window, with any per-window field beyond the window table's own as a badge."""

from __future__ import annotations

import pandas as pd

from entropy_sentinel.serve.monitor import AlertRules, html_page


def windows() -> pd.DataFrame:
    starts = list(pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC")) * 2
    return pd.DataFrame(
        {
            "slice": ["a"] * 3 + ["*"] * 3,
            "window_start": starts,
            "n": 30,
            "point": [0.8, 0.7, 0.4] * 2,
            "low": [0.7, 0.6, 0.3] * 2,
            "high": [0.9, 0.8, 0.5] * 2,
            "level": 0.9,
            "covers": "slices like <these>",
            "baseline_point": 0.8,
            "baseline_n": 30,
            "drop": [0.0, 0.1, 0.4] * 2,
        }
    )


ALERT = {
    "slice": "a",
    "window_start": "2026-01-01T02:00:00+00:00",
    "alert": "drop_from_baseline",
    "message": "estimate <b>0.400</b>",
}


def test_one_chart_per_slice_alerts_escaped_and_the_same_bytes_twice():
    page = html_page(windows(), [ALERT], AlertRules(max_drop=0.2), "monitor <x>")
    assert page.count("<svg") == 2 and page.count('class="chart"') == 2
    assert "<title>monitor &lt;x&gt;</title>" in page
    assert "estimate &lt;b&gt;0.400&lt;/b&gt;" in page and "slices like &lt;these&gt;" in page
    assert page.count('class="alerted"') == 1  # the alerted window of slice a
    assert (
        'id="windows"' in page and 'id="alerts"' in page and "badge" not in page.split("<h2>")[-1]
    )
    assert page == html_page(windows(), [ALERT], AlertRules(max_drop=0.2), "monitor <x>")


def test_an_extra_per_window_field_is_shown_as_a_badge():
    table = windows().assign(regime=["study", "study", "traffic"] * 2)
    table.loc[0, "regime"] = None
    page = html_page(table, [], AlertRules(), "monitor")
    assert "<th>regime</th>" in page
    assert page.count('<span class="badge regime">study</span>') == 3
    assert page.count('<span class="badge regime">traffic</span>') == 2
    assert "No alerts." in page
