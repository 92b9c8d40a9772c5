"""pyproject.toml declares what the code needs, in the current metadata format."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# transformers 4.54.0 is the first release with the per-layer KV cache the transformers backend
# edits in place (cache_utils.DynamicLayer, DynamicCache.layers); 4.53.3 has neither.
FIRST_WITH_CACHE_LAYERS = Version("4.54.0")


def test_license_is_an_spdx_expression_that_setuptools_accepts():
    from setuptools.config.pyprojecttoml import read_configuration

    assert PYPROJECT["project"]["license"] == "MIT"
    assert read_configuration(REPO / "pyproject.toml")["project"]["license"] == "MIT"


def test_transformers_lower_bound_has_the_cache_api_the_backend_uses():
    (requirement,) = [
        Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("transformers")
    ]
    lowest = min(Version(s.version) for s in requirement.specifier if s.operator == ">=")
    assert lowest >= FIRST_WITH_CACHE_LAYERS
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    assert hasattr(DynamicCache(), "layers") and hasattr(DynamicLayer, "update")
