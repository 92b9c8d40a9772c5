"""The strict config loader and the plan's checks: each problem named by file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from entropy_sentinel.config.loading import ConfigError, load_config_file, validate_config
from entropy_sentinel.config.plan import plan_workflow

REPO = Path(__file__).resolve().parents[1]


def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_duplicate_model_names_are_an_error_with_file_line_and_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "models:\n"
        "  tiny:\n"
        "    source: hub\n"
        "    repo_id: a/b\n"
        "  tiny:\n"
        "    source: local\n"
        "    path: /models/tiny\n"
    )
    with pytest.raises(ConfigError, match=rf"{path}:5:3: duplicate key models\.tiny .*line 2"):
        load_config_file(path)


def test_nested_duplicate_keys_are_found(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("generation:\n  settings:\n    seed: 1\n    seed: 2\n")
    with pytest.raises(ConfigError, match=r":4:5: duplicate key generation\.settings\.seed"):
        load_config_file(path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("generation:\n  shard_size: [16\n  chunk_size: 4\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3:13: YAML syntax error: .*line 2"):
        load_config_file(path)


def test_a_valid_file_loads_as_plain_yaml():
    path = REPO / "config" / "config.yaml"
    assert load_config_file(path) == yaml.safe_load(path.read_text())


def test_schema_errors_name_the_key_path():
    config = demo_config()
    config["generation"]["settings"]["max_new_tokens"] = "many"
    del config["models"]["smollm2-135m"]["sha256"]
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    message = str(raised.value)
    assert "generation.settings.max_new_tokens: 'many' is not of type 'integer'" in message
    assert "models.smollm2-135m: 'sha256' is a required property" in message


def test_validation_fills_schema_defaults():
    config = demo_config()
    del config["generation"]["chunk_size"]
    validate_config(config)
    assert config["generation"]["chunk_size"] == 32  # the schema's default


@pytest.mark.parametrize(
    "source, make, problem",
    [
        ("gguf", lambda d: d / "absent.gguf", "no such file"),
        ("local", lambda d: d / "absent", "does not exist"),
        ("local", lambda d: d, "has no config.json"),
    ],
)
def test_local_model_sources_must_exist(tmp_path, source, make, problem):
    config = demo_config()
    config["models"] = {"mine": {"source": source, "path": str(make(tmp_path))}}
    with pytest.raises(ConfigError, match=rf"^models\.mine\.path: .*{problem}.*fix the path"):
        plan_workflow(config)


def test_existing_local_model_sources_pass(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    config = demo_config()
    config["models"] = {
        "folder": {"source": "local", "path": str(tmp_path)},
        "file": {"source": "gguf", "path": str(tmp_path / "m.gguf")},
    }
    assert plan_workflow(config).models == ["file", "folder"]


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"source": "file", "path": "absent.jsonl"}, r"no such file absent\.jsonl"),
        ({"source": "file", "path": "data.xlsx"}, r"data\.xlsx is not one of the readable types"),
        ({"source": "registry", "name": "gsm8k", "path": "absent"}, "no such file or folder"),
    ],
)
def test_local_benchmark_files_must_exist(settings, problem):
    config = demo_config()
    fields = {"question_field": "q", "answer_field": "a", "answer_type": "integer"}
    config["benchmarks"]["mine"] = settings | (fields if settings["source"] == "file" else {})
    with pytest.raises(ConfigError, match=rf"^benchmarks\.mine\.path: .*{problem}"):
        plan_workflow(config)


def test_file_benchmark_fields_must_exist_in_the_file(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"q": "What is 1+1?", "a": "2"}\n')
    config = demo_config()
    config["benchmarks"]["mine"] = {
        "source": "file",
        "path": str(data),
        "question_field": "question",
        "answer_field": "a",
        "answer_type": "integer",
    }
    with pytest.raises(
        ConfigError, match=r"^benchmarks\.mine\.question_field: 'question' is not a"
    ):
        plan_workflow(config)


def test_missing_intermediates_to_rebuild_and_shards_to_report(tmp_path):
    config = demo_config()
    config["generation"]["shard_size"] = 100  # 150 demo items: two shards
    plan = plan_workflow(config)
    model = plan.models[0]
    for path in (
        f"results/grades/{model}/synthetic.parquet",
        f"results/evaluation/{model}/metrics.json",
        f"results/generations/{model}/synthetic/.shard-0.parts/chunk-00000.parquet",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    rebuild, from_scratch = plan.missing_intermediates(tmp_path)
    assert rebuild == [  # shard 0 resumes from its chunks; features sit between two results
        f"results/generations/{model}/synthetic/shard-0.parquet",
        f"results/features/{model}/synthetic.parquet",
    ]
    assert from_scratch == [f"results/generations/{model}/synthetic/shard-1.parquet"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost-8000", "is not an http(s) URL with a host"),
        ("127.0.0.1:8000/v1", "is not an http(s) URL with a host"),
        ("ftp://host/v1", "is not an http(s) URL with a host"),
        ("http://host:port/v1", "is not a valid URL"),
        ("", "is not a URL"),
    ],
)
def test_server_urls_must_be_http_urls_before_any_job(tmp_path, url, problem):
    config = demo_config()
    config["generation"].update(backend="openai", openai={"base_url": url})
    with pytest.raises(
        ConfigError, match=r"^generation\.openai\.base_url: .*" + re.escape(problem)
    ):
        plan_workflow(config)
    config = demo_config()
    config["grading"] = {"judge": {"enabled": True, "base_url": url, "model": "judge"}}
    with pytest.raises(ConfigError, match=r"^grading\.judge\.base_url: "):
        plan_workflow(config)


def test_a_bad_base_url_fails_the_dry_run(tmp_path):
    import subprocess

    config = demo_config()
    config["generation"].update(backend="openai", openai={"base_url": "localhost-8000"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [str(REPO / ".venv/bin/snakemake"), "-n", "-s", str(REPO / "Snakefile"),
         "--configfile", str(tmp_path / "config.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Invalid configuration: generation.openai.base_url: 'localhost-8000' is not" in said
    assert "Traceback" not in said


def test_valid_server_urls_pass():
    for url in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1"):
        config = demo_config()
        config["generation"].update(backend="openai", openai={"base_url": url})
        plan_workflow(config)


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    """The configs the README and the Makefile name (the demo, the paper's grid, the studies)
    pass the schema as they are."""
    config = validate_config(load_config_file(path))
    assert config["models"] and config["benchmarks"]
