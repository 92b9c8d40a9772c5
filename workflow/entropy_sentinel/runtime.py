"""Process setup shared by the workflow's scripts."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from entropy_sentinel.integrity import check_inputs


def log_to(path: str, name: str, inputs: Iterable | None = None) -> logging.Logger:
    """Send this process's logs (and warnings) to ``path``, one file per job.

    With ``inputs`` (a job's input files), each is then checked for integrity, so a torn input
    fails here, in the job's log, naming the file and the command that rebuilds it.
    """
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addFilter(_not_sklearn_thread_race)
    sys.excepthook = _log_uncaught  # the traceback lands in the job's log, not only stderr
    # Snakemake, Slurm (preemption, time limit) and `kill` stop a job with SIGTERM, which would
    # end Python silently: raise instead, so cleanups run and the log says where it stopped.
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if inputs is not None:
        check_inputs(inputs)
    return logging.getLogger(name)


# scikit-learn's Parallel resets the process-wide warning filters while its tasks run, so a fit in
# another thread (accuracy.py refits in threads) can find them empty and then warns, wrongly,
# that sklearn's delayed lacks sklearn's Parallel, once per fit: thousands of harmless lines.
_SKLEARN_THREAD_RACE = "`sklearn.utils.parallel.delayed` should be used with"


def _not_sklearn_thread_race(record: logging.LogRecord) -> bool:
    return _SKLEARN_THREAD_RACE not in record.getMessage()


class JobInterrupted(KeyboardInterrupt):
    """SIGTERM, as an exception (a ``KeyboardInterrupt``, so no ``except Exception`` eats it)."""


def _raise_interrupted(signum, frame) -> None:
    raise JobInterrupted(
        f"interrupted by {signal.Signals(signum).name}; finished chunks are kept and a rerun "
        "resumes from them"
    )


def _log_uncaught(kind, value, traceback) -> None:
    logging.getLogger("uncaught").critical("job failed", exc_info=(kind, value, traceback))
    sys.__excepthook__(kind, value, traceback)


def import_from(folder: str | Path) -> None:
    """Import this package from ``folder`` here and in every child process (jobs' scripts, in
    whatever conda env): first on ``sys.path`` and on ``PYTHONPATH``."""
    folder = str(folder)
    if sys.path[0] != folder:
        sys.path.insert(0, folder)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])


def stop_jobs_on_signal(grace_s: float = 20.0) -> None:
    """In Snakemake's main process: on SIGINT or SIGTERM, interrupt the running jobs too.

    Snakemake waits for running jobs before it exits, and a job of the local executor never
    hears the signal, so without this a generation would run to its end. Each job's Python
    gets SIGTERM (``log_to`` turns it into ``JobInterrupted``: finished chunks are committed);
    after ``grace_s`` whatever is left is killed. Snakemake's own handler then runs as before.
    """
    import threading

    import psutil

    def stop_children() -> None:
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):  # shells exit when their command does
                if child.name() not in _SHELLS:
                    child.terminate()

        def kill_rest() -> None:
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()

        timer = threading.Timer(grace_s, kill_rest)
        timer.daemon = True
        timer.start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)

        def handler(number, frame, previous=previous):
            stop_children()
            if callable(previous):
                previous(number, frame)
            elif previous == signal.SIG_DFL and number == signal.SIGINT:
                raise KeyboardInterrupt

        try:
            signal.signal(signum, handler)
        except ValueError:  # not the main thread: nothing to install
            return


_SHELLS = {"bash", "sh", "dash", "zsh"}


SUMMARY = "results/summary.md"


def closing_message(targets) -> str:
    """What a successful run made: the summary only when it was a target."""
    targets = sorted(map(str, targets or ()))
    if not targets or "all" in targets or "summary" in targets or SUMMARY in targets:
        return f"Entropy Sentinel: summary written to {SUMMARY}"
    return f"Entropy Sentinel: done: {', '.join(targets)} (no summary was asked for)"
