"""The one matplotlib entry point of the package: headless pyplot, and a figure saved to a
file or returned as inline SVG (report figures and the monitor page both go through here)."""

from __future__ import annotations

import io
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, **savefig) -> None:
    """Write ``fig`` to ``path`` and free it."""
    fig.savefig(path, **{"dpi": 120, **savefig})
    pyplot().close(fig)


def svg(fig, label: str = "") -> str:
    """``fig`` as an ``<svg>`` element to inline in a page (text kept as text), then freed.
    The ids matplotlib writes are salted with ``label`` so that several charts can share a
    page and a rerun writes the same bytes."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": label or "chart"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]
