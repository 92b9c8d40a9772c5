"""Start-up: ``inspect`` reads a saved estimator's metadata without scikit-learn, and loading one
imports neither torch (skops' trusted types otherwise pull it in) nor imbalanced-learn. Times
are bench/score.py's business; these tests check which modules a fresh process imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_cli import fit_estimator

from entropy_sentinel.estimate.classifier import load_estimator
from entropy_sentinel.estimate.saved import read_metadata


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    return fit_estimator(tmp_path_factory.mktemp("est") / "estimator.skops")


def imported_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running ``code``."""
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport sys, json\n{listing}"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_metadata_read_from_the_file_is_what_the_loaded_estimator_reports(estimator):
    assert read_metadata(estimator) == json.loads(json.dumps(load_estimator(estimator).metadata()))


def test_inspect_imports_neither_sklearn_nor_torch(estimator):
    code = (
        "from entropy_sentinel.serve.cli import main\n"
        f"assert main(['inspect', {str(estimator)!r}]) == 0"
    )
    modules = imported_after(code)
    assert "entropy_sentinel" in modules
    assert not modules & {"sklearn", "skops", "torch", "scipy", "pandas"}


def test_loading_an_estimator_imports_only_what_it_holds(estimator):
    code = (
        "from entropy_sentinel.estimate.classifier import load_estimator\n"
        f"load_estimator({str(estimator)!r})"
    )
    modules = imported_after(code)
    assert {"sklearn", "skops"} <= modules
    assert "torch" not in modules
    assert "imblearn" not in modules  # a logistic regression has no oversampler to load


def test_metadata_of_a_corrupt_or_foreign_file_names_the_problem(estimator, tmp_path):
    torn = tmp_path / "torn.skops"
    torn.write_bytes(estimator.read_bytes()[: estimator.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"torn\.skops.*truncated or corrupt.*forcerun"):
        read_metadata(torn)
    import skops.io as sio

    sio.dump({"model": 1}, tmp_path / "other.skops")
    with pytest.raises(ValueError, match="not a saved Entropy Sentinel"):
        read_metadata(tmp_path / "other.skops")
