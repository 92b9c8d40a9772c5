"""Job process setup (entropy_sentinel.runtime): what a job's log holds when it dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

JOB = """
import sys, time
sys.path.insert(0, {package!r})
from entropy_sentinel.runtime import log_to
log = log_to({log!r}, "job")
log.info("started")
try:
    time.sleep(60)
finally:
    log.info("cleanup ran")
"""


def test_sigterm_is_logged_with_its_traceback(tmp_path):
    """A job stopped by SIGTERM (Snakemake, Slurm, kill) leaves a log that says so."""
    log = tmp_path / "job.log"
    script = JOB.format(package=str(REPO / "workflow"), log=str(log))
    job = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if log.exists() and "started" in log.read_text():
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=30)
    assert job.returncode != 0
    text = log.read_text()
    assert "cleanup ran" in text  # finally blocks run: temporary files are removed
    assert "JobInterrupted: interrupted by SIGTERM" in text and "Traceback" in text
    assert "resumes" in stderr


WARNINGS = """
import sys, warnings
sys.path.insert(0, {package!r})
from entropy_sentinel.runtime import log_to
log_to({log!r}, "job")
warnings.simplefilter("always")
warnings.warn("a real problem", UserWarning)
warnings.warn("`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel."
              "Parallel` to make it possible to propagate the scikit-learn configuration")
"""


def test_warnings_reach_the_log_except_sklearns_thread_race(tmp_path):
    log = tmp_path / "job.log"
    script = WARNINGS.format(package=str(REPO / "workflow"), log=str(log))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    text = log.read_text()
    assert "a real problem" in text and "should be used with" not in text
