"""Process setup shared by the workflow's scripts."""

from __future__ import annotations

import logging


def log_to(path: str, name: str) -> logging.Logger:
    """Send this process's logs (and warnings) to ``path``, one file per job."""
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    return logging.getLogger(name)
