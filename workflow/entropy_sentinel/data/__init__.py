"""Benchmarks: the registry, loaders into the normalised schema, splits and prompts.

Names are imported on first use: building the workflow's DAG needs only the registry and
the synthetic domains, not the loaders and the grading stack behind them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_benchmark": "loaders",
    "read_records": "loaders",
    "PROMPT_STYLES": "prompts",
    "build_messages": "prompts",
    "REGISTRY": "registry",
    "STEM_TEN": "registry",
    "BenchmarkSpec": "registry",
    "get_spec": "registry",
    "make_split": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
