"""Torn inputs fail at once, named, with the command that rebuilds them; writes leave no debris."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import zipfile

import pandas as pd
import pyarrow.parquet as pq
import pytest

from entropy_sentinel.integrity import CorruptInputError, check_inputs
from entropy_sentinel.provenance import write_json, write_parquet


def truncated(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture()
def files(tmp_path):
    shard = tmp_path / "results/generations/m/b/shard-0.parquet"
    write_parquet(pd.DataFrame({"item_id": ["a", "b"], "n_tokens": [1, 2]}), shard)
    meta = tmp_path / "manifest.json"
    write_json({"name": "m"}, meta)
    skops = tmp_path / "estimator.skops"
    with zipfile.ZipFile(skops, "w") as archive:
        archive.writestr("schema.json", json.dumps({"x": list(range(200))}))
    return {"parquet": shard, "json": meta, "skops": skops}


def test_intact_files_pass(files):
    check_inputs([files["parquet"], [files["json"], files["skops"]]])


@pytest.mark.parametrize("kind", ["parquet", "json", "skops"])
def test_a_truncated_input_names_the_file_and_the_recovery_command(files, kind):
    path = truncated(files[kind])
    with pytest.raises(CorruptInputError) as raised:
        check_inputs([str(path)])
    message = str(raised.value)
    assert message.startswith(f"{path} is unreadable (")
    assert message.endswith(
        f"Rebuild it and everything made from it with: snakemake --forcerun {path}"
    )


def test_an_empty_input_is_corrupt(tmp_path):
    path = tmp_path / "grades.parquet"
    path.touch()
    with pytest.raises(CorruptInputError, match="the file is empty"):
        check_inputs([path])


def test_log_to_checks_inputs_and_the_traceback_lands_in_the_job_log(files, tmp_path):
    """As a script runs under Snakemake: a fresh process whose uncaught error must be logged."""
    log = tmp_path / "job.log"
    path = truncated(files["parquet"])
    script = (
        "from entropy_sentinel.runtime import log_to\n"
        f"log_to({str(log)!r}, 'grade', inputs=[{str(path)!r}])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 1
    text = log.read_text()
    assert "CRITICAL uncaught: job failed" in text and "Traceback" in text
    assert f"CorruptInputError: {path} is unreadable" in text
    assert f"snakemake --forcerun {path}" in text


@pytest.mark.parametrize("writer", ["parquet", "json"])
def test_a_failed_write_leaves_no_temp_file_and_keeps_the_old_output(tmp_path, monkeypatch, writer):
    path = tmp_path / f"out.{writer}"
    frame = pd.DataFrame({"x": [1]})
    write = write_parquet if writer == "parquet" else write_json
    write(frame if writer == "parquet" else {"x": 1}, path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        target = args[1] if writer == "parquet" else args[0]
        with open(target, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    if writer == "parquet":
        monkeypatch.setattr(pq, "write_table", disk_full)
    else:
        monkeypatch.setattr("pathlib.Path.write_text", lambda self, text: disk_full(self))
    with pytest.raises(OSError, match="No space left"):
        write(frame if writer == "parquet" else {"x": 2}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.read_bytes() == before
