"""The HTML pages in a real browser (headless Chromium over the DevTools protocol,
tests/browser.py): the monitor page and the ``snakemake --report`` page render at the window's
size, are not blank, show every chart, and log no console error or uncaught exception.
Skipped, saying so, where Chromium is not installed (``apt-get install -y chromium``)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import chromium, open_page, png_size
from test_cli import fit_estimator
from traffic_logs import write_log

from entropy_sentinel.serve.logs import LogFormat
from entropy_sentinel.serve.monitor import AlertRules, Baseline, run_monitor

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="no Chromium to render the pages in: apt-get install -y chromium (or set CHROMIUM)",
)

# Every drawn chart with its size on screen, and the text a reader sees (page text, alt texts
# and ARIA labels), whatever draws the charts (inline SVG or images).
CHARTS = """(() => {
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 50 && r.height > 50; };
  const charts = [...document.querySelectorAll('svg, img, canvas')].filter(shown).map(e => ({
    tag: e.tagName.toLowerCase(),
    loaded: e.tagName !== 'IMG' || (e.complete && e.naturalWidth > 0),
    label: e.getAttribute('aria-label') || e.getAttribute('alt') || '',
  }));
  const labels = [...document.querySelectorAll('[alt], [aria-label], title')]
    .map(e => e.getAttribute('alt') || e.getAttribute('aria-label') || e.textContent);
  return {charts, text: document.body.innerText + '\\n' + labels.join('\\n'),
          width: document.documentElement.scrollWidth};
})()"""

# Every result the report embeds, and the width its image decodes to in the page (0: broken).
REPORT_FIGURES = """(async () => {
  const entries = Object.values(window.results || {});
  const widths = await Promise.all(entries.map(r => new Promise(done => {
    const img = new Image();
    img.onload = () => done(img.naturalWidth);
    img.onerror = () => done(0);
    img.src = r.data_uri;
  })));
  return {files: entries.map(r => r.filename.split('/').pop()), widths};
})()"""


def look(png: bytes, size: tuple[int, int]) -> None:
    """The screenshot is the window's size and shows something: ink on much of it, in colour."""
    from matplotlib.image import imread

    assert png_size(png) == size
    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    ink = (pixels < 0.9).any(axis=2)
    assert ink.mean() > 0.02, f"the page looks blank ({ink.mean():.1%} of it is not white)"
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"only {len(colours)} colours on the page"


@pytest.fixture(scope="module")
def monitor_page(tmp_path_factory) -> Path:
    """A monitor run over a day of three tenants, one of which gets worse: charts and alerts."""
    tmp = tmp_path_factory.mktemp("monitor")
    estimator = fit_estimator(tmp / "estimator.skops")
    log = write_log(tmp / "traffic.jsonl", 600, seed=2, spacing_s=60)
    write_log(tmp / "traffic.jsonl", 300, seed=3, start=1_767_225_600 + 36_000, spacing_s=60,
              spread=(0.1, 0.6), mode="a")  # fmt: skip
    run_monitor(
        logs=[log],
        estimator_path=estimator,
        fmt=LogFormat("response", "tenant", "time", logprobs_mode="raw"),
        window="hour",
        baseline=Baseline(),
        rules=AlertRules(min_accuracy=0.6, max_drop=0.1, min_responses=5),
        out_dir=tmp / "out",
    )
    return tmp / "out"


def test_the_monitor_page_renders_every_slice_chart_without_console_errors(monitor_page):
    slices = sorted(pd.read_csv(monitor_page / "windows.csv")["slice"].unique())
    assert len(slices) == 4  # a, b, c and all traffic
    page = open_page(monitor_page / "monitor.html", CHARTS, width=1280, height=900)
    assert page.errors() == [], page.errors()
    charts = page.facts["charts"]
    assert len(charts) >= len(slices), charts
    assert all(chart["loaded"] for chart in charts), charts
    for name in slices:
        assert ("all traffic" if name == "*" else f"slice {name}") in page.facts["text"]
    look(page.screenshot, (1280, 900))


def test_a_broken_page_is_caught(tmp_path):
    """The checks can fail: a script error, a missing image and a blank page are all seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><body>"
        "<img src='missing.png' style='display:block;width:200px;height:200px' alt='x'>"
        "<script>console.error('drawing failed'); undefinedChart();</script></body></html>"
    )
    page = open_page(bad, CHARTS, width=800, height=600)
    levels = sorted(m["level"] for m in page.errors())
    assert "exception" in levels and levels.count("error") >= 2  # console.error, the 404
    assert page.facts["charts"][0]["loaded"] is False
    with pytest.raises(AssertionError, match="blank"):
        look(page.screenshot, (800, 600))


@pytest.mark.slow
def test_the_snakemake_report_renders_every_figure_without_console_errors(tiny_model, tmp_path):
    """The workflow's figures through ``snakemake --report`` (the end-to-end workflow first)."""
    from test_workflow import REPO, make_workdir, run_snakemake, tiny_config

    workdir = make_workdir(tmp_path, tiny_config(tiny_model))
    run_snakemake(workdir)
    report = workdir / "report.html"
    snakemake = Path(sys.executable).parent / "snakemake"
    run = subprocess.run(
        [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(workdir / "config" / "config.yaml"), "--report", str(report)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = sorted(p.name for p in (workdir / "results" / "report").glob("*.png"))
    assert len(figures) >= 4, figures
    page = open_page(report, REPORT_FIGURES, width=1280, height=900, timeout_s=120)
    # the report's own stylesheet comes from a CDN: unreachable offline, and not ours
    errors = [e for e in page.errors() if not e["url"].startswith(("http:", "https:"))]
    assert errors == [], errors
    shown = dict(zip(page.facts["files"], page.facts["widths"], strict=True))
    assert set(figures) <= set(shown), shown
    assert all(shown[name] > 100 for name in figures), shown  # each PNG decodes in the page
    look(page.screenshot, (1280, 900))
