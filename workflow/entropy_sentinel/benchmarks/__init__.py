"""Benchmarks: the registry, loaders into the normalised schema, splits and prompts."""

from __future__ import annotations

from .loaders import load_benchmark, read_records
from .prompts import PROMPT_STYLES, build_messages
from .registry import REGISTRY, STEM_TEN, BenchmarkSpec, get_spec
from .splits import make_split

__all__ = [
    "PROMPT_STYLES",
    "REGISTRY",
    "STEM_TEN",
    "BenchmarkSpec",
    "build_messages",
    "get_spec",
    "load_benchmark",
    "make_split",
    "read_records",
]
