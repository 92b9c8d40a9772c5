"""Config fuzzing: configs drawn from the schema, one mutation each.

Every mutated config must either be rejected by ``plan_workflow`` (the code path the Snakefile
runs before any job) with a message naming the mutated key, or be accepted and then survive
what the jobs do with their config (plan, cost report, benchmark loading, split, sharding,
prompts, generation settings, local models). A small sample also goes through a real
``snakemake -n``, which must agree. Hub downloads, GPU backends and estimator fitting are not
exercised here (no network, no GPU, and fitting is the estimator tests' business).
"""

from __future__ import annotations

import copy
import json
import os
import string
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from entropy_sentinel.config.cost import pending_cost_report
from entropy_sentinel.config.loading import SCHEMA, ConfigError, key_path
from entropy_sentinel.config.plan import plan_workflow
from entropy_sentinel.data import build_messages, load_benchmark, make_split
from entropy_sentinel.data.synthetic import DOMAINS
from entropy_sentinel.generate.backends import GenerationSettings
from entropy_sentinel.generate.models import fetch_model
from entropy_sentinel.generate.shard import shard_items

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DOC = yaml.safe_load(SCHEMA.read_text())
DEFS = SCHEMA_DOC["$defs"]
N_CONFIGS = 500
SLUG = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)
SHA256 = st.text("0123456789abcdef", min_size=64, max_size=64)


# ------------------------------------------------------------------ drawing from the schema


def resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = DEFS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(schema: dict, depth: int = 0) -> st.SearchStrategy:
    """Values valid for ``schema`` (the subset of JSON Schema the config schema uses)."""
    schema = resolve(schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kinds = schema.get("type", "object")
    if isinstance(kinds, list):
        return st.one_of([from_schema({**schema, "type": kind}, depth) for kind in kinds])
    if kinds == "null":
        return st.none()
    if kinds == "boolean":
        return st.booleans()
    if kinds == "integer":
        low = schema.get("minimum", 0)
        return st.integers(low, schema.get("maximum", low + 40))
    if kinds == "number":
        return st.floats(
            schema.get("minimum", schema.get("exclusiveMinimum", 0.0)),
            schema.get("maximum", schema.get("exclusiveMaximum", 10.0)),
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
            allow_nan=False,
        )
    if kinds == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 40)
        return st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
    if kinds == "array":
        return st.lists(
            from_schema(schema.get("items", {"type": "string"}), depth + 1),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", 3),
        )
    properties = schema.get("properties", {})
    if not properties:  # a free-form mapping
        values = schema.get("additionalProperties", {"type": "string"})
        values = {"type": "string"} if values is True else values
        return st.dictionaries(SLUG, from_schema(values, depth + 1), max_size=2)
    return objects(schema, depth)


# The plan requires http(s) URLs (plan.check_server_urls), which the schema does not say.
URL = st.builds(lambda host, port: f"http://{host}:{port}/v1", SLUG, st.integers(1, 65535))


def _property(name: str, schema: dict, depth: int):
    return URL if name == "base_url" else from_schema(schema, depth)


@st.composite
def objects(draw, schema: dict, depth: int) -> dict:
    properties, required = schema["properties"], set(schema.get("required", ()))
    value = draw(
        st.fixed_dictionaries(
            {k: _property(k, v, depth + 1) for k, v in properties.items() if k in required},
            optional={
                k: _property(k, v, depth + 1) for k, v in properties.items() if k not in required
            },
        )
    )
    branches = schema.get("oneOf", ())
    if branches and all(set(b) == {"required"} for b in branches):  # exactly one of the keys
        chosen = draw(st.sampled_from(branches))["required"]
        for branch in branches:
            for k in branch["required"]:
                value.pop(k, None)
        for k in chosen:
            value[k] = draw(from_schema(properties[k], depth + 1))
    rules = [*schema.get("allOf", ()), *([schema] if "if" in schema else [])]
    for rule in rules:  # if: {properties: {key: const/enum}} then: {required: [...]}
        condition = rule.get("if", {}).get("properties", {})
        if all(k in value and _matches(value[k], c) for k, c in condition.items()):
            for k in rule.get("then", {}).get("required", ()):
                if k not in value:
                    value[k] = draw(_property(k, properties[k], depth + 1))
    return value


def _matches(value, condition: dict) -> bool:
    if "const" in condition:
        return value == condition["const"]
    return value in condition.get("enum", [value])


# Keys whose valid values depend on each other or on files; drawn by hand below.
SEMANTIC = {
    "model": {"source", "path", "repo_id", "package", "version", "member", "sha256", "wheel_dir"},
    "benchmark": {"source", "name", "path", "dataset", "question_field", "answer_field"}
    | {"answer_type", "id_field", "domain_field", "domains", "n_per_domain", "limit"}
    | {"expected_items", "variant", "instances", "config", "split", "per_domain_skip"},
}


def free_part(definition: str) -> st.SearchStrategy:
    schema = DEFS[definition]
    free = {k: v for k, v in schema["properties"].items() if k not in SEMANTIC[definition]}
    return from_schema({"type": "object", "properties": free})


@st.composite
def model_specs(draw, files: dict) -> dict:
    spec = draw(free_part("model"))
    source = draw(st.sampled_from(["hub", "local", "gguf", "pypi_wheel"]))
    spec["source"] = source
    if source == "hub":
        spec["repo_id"] = "org/" + draw(SLUG)
    elif source in ("local", "gguf"):
        spec["path"] = str(files[source])
    else:
        spec.update(package="llm-x", version="1.0", member="x/m.gguf", sha256=draw(SHA256))
    return spec


@st.composite
def benchmark_settings(draw, files: dict) -> dict:
    settings = draw(free_part("benchmark"))
    source = draw(st.sampled_from(["synthetic", "synthetic", "file", "registry"]))
    settings["source"] = source
    if source == "synthetic":
        settings["n_per_domain"] = draw(st.integers(1, 4))
        if draw(st.booleans()):
            settings["domains"] = draw(
                st.lists(st.sampled_from(sorted(DOMAINS)), min_size=1, unique=True)
            )
    elif source == "file":
        settings.update(
            path=str(files["jsonl"]),
            question_field="q",
            answer_field="a",
            answer_type=draw(st.sampled_from(["integer", "numeric", "expression"])),
        )
        if draw(st.booleans()):
            settings["domain_field"] = "topic"
    else:
        settings["name"] = draw(st.sampled_from(["gsm8k", "svamp", "math500"]))
    if draw(st.booleans()):
        settings["limit"] = draw(st.integers(1, 30))
    return settings


# Sections valid whatever their values (within the schema). Models, benchmarks and the
# estimator are drawn by hand; sections that name other parts of the config (monitor) are left
# to their own tests.
SELF_CONTAINED = ("generation", "split", "grading", "features", "sweep")


@st.composite
def valid_configs(draw, files: dict) -> dict:
    """A config the schema and the plan accept: free parts drawn from the schema."""
    properties = SCHEMA_DOC["properties"]
    config = {
        key: draw(from_schema(properties[key]))
        for key in SELF_CONTAINED
        if key in properties and (key in SCHEMA_DOC["required"] or draw(st.booleans()))
    }
    config["models"] = draw(st.dictionaries(SLUG, model_specs(files), min_size=1, max_size=2))
    benchmarks = draw(st.dictionaries(SLUG, benchmark_settings(files), min_size=1, max_size=2))
    config["benchmarks"] = benchmarks
    estimator = draw(from_schema(properties["estimator"]))
    synthetic_only = all(b["source"] == "synthetic" for b in benchmarks.values())
    if estimator["slice_by"] == "domain" and synthetic_only:
        domains = sorted({d for b in benchmarks.values() for d in b.get("domains", DOMAINS)})
    else:
        estimator["slice_by"], domains = "benchmark", sorted(benchmarks)
    estimator["train_slices"] = draw(st.lists(st.sampled_from(domains), min_size=1, unique=True))
    config["estimator"] = estimator
    return config


# ------------------------------------------------------------------ one mutation


def paths_of(value, prefix=()) -> list[tuple]:
    """Every key path in a config (list positions included)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            found.append((*prefix, position))
            found += paths_of(item, (*prefix, position))
    return found


def wrong_type(value):
    """A value of another JSON type than ``value``."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, str):
        return {"value": value}
    if isinstance(value, list | dict):
        return 7
    return "text"


@st.composite
def mutated_configs(draw, files: dict) -> tuple[dict, tuple, str]:
    config = draw(valid_configs(files))
    path = draw(st.sampled_from(paths_of(config)))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    key, old = path[-1], parent[path[-1]]
    kind = draw(st.sampled_from(["delete", "type", "range", "enum", "unknown_key", "null"]))
    if kind == "delete":
        parent.pop(key)
    elif kind == "type":
        parent[key] = wrong_type(old)
    elif kind == "range":
        parent[key] = (old - 10**6) if isinstance(old, int | float) else -1
    elif kind == "enum":
        parent[key] = "no_such_" + draw(SLUG)
    elif kind == "null":
        parent[key] = None
    else:  # an unknown key inside the mapping at ``path`` (or beside it)
        target = old if isinstance(old, dict) else parent
        if not isinstance(target, dict):
            target, path = config, ()
        elif target is not old:
            path = path[:-1]
        name = "zz_" + draw(SLUG)
        target[name] = 1
        path = (*path, name)
    return config, path, kind


# ------------------------------------------------------------------ what the jobs do


def run_job_consumers(config: dict, plan, workdir: Path) -> None:
    """What the jobs and the dry-run do with an accepted config, in-process."""
    pending_cost_report(config, plan, workdir)
    plan.missing_intermediates(workdir)
    for name, spec in config["models"].items():
        generation = config["generation"]
        GenerationSettings.from_config(
            {"trust_remote_code": spec.get("trust_remote_code", False), **generation["settings"]}
        )
        if spec["source"] == "local":
            fetch_model(name, dict(spec), workdir / "models" / name)
    for name, settings in config["benchmarks"].items():
        if settings["source"] not in ("synthetic", "file"):
            continue  # registry without a path and hub: the Hugging Face Hub (no network here)
        table = load_benchmark(name, settings)
        assert not table.empty, f"benchmark {name}: no items"
        make_split(table["item_id"], strata=table["domain"], **config["split"])
        build_messages(table["question"].iloc[0], settings.get("prompt", "raw"))
        n_shards = plan.n_shards(name)
        shard_size = config["generation"].get("shard_size", 500)
        covered = sum(len(shard_items(table, s, n_shards, shard_size)) for s in range(n_shards))
        assert covered == len(table), f"benchmark {name}: shards cover {covered}/{len(table)}"


def names_the_mutation(message: str, path: tuple, kind: str) -> bool:
    """The error names the mutated key, or its parent mapping and the key's name, or (for a
    list item, or a deleted entry) the list or mapping that holds it."""
    if key_path(path) in message:
        return True
    if kind == "delete" and repr(path[-1]) in message:
        return True  # a reference to the deleted entry, e.g. train_slices: ['gsm8k'] unknown
    if kind == "delete" and path[0] == "benchmarks" and "estimator.train_slices:" in message:
        return True  # the deleted benchmark held a training domain, which the error names
    if isinstance(path[-1], int) or kind == "delete":
        return f"{key_path(path[:-1]) if path[:-1] else '(top level)'}:" in message
    parent = key_path(path[:-1]) if path[:-1] else "(top level)"
    return parent in message and str(path[-1]) in message


# ------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fuzz-files")
    (root / "local-model").mkdir()
    (root / "local-model" / "config.json").write_text("{}")
    (root / "m.gguf").write_bytes(b"GGUF")
    rows = [{"q": f"What is {n} + {n}?", "a": str(2 * n), "topic": f"t{n % 3}"} for n in range(12)]
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"local": root / "local-model", "gguf": root / "m.gguf", "jsonl": root / "data.jsonl"}


def test_drawn_configs_are_valid(files, tmp_path):
    """The generator itself: unmutated configs pass the plan and survive the job consumers."""

    @fuzz_settings(max_examples=40, deadline=None, database=None, derandomize=True)
    @given(valid_configs(files))
    def check(config):
        run_job_consumers(config, plan_workflow(config), tmp_path)

    check()


def test_mutated_configs_are_rejected_by_path_or_run(files, tmp_path, record_property, capsys):
    outcomes: Counter = Counter()
    unnamed: list[str] = []

    @fuzz_settings(
        max_examples=N_CONFIGS,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated_configs(files))
    def check(case):
        config, path, kind = case
        try:
            plan = plan_workflow(copy.deepcopy(config))
        except ConfigError as error:
            outcomes["rejected"] += 1
            outcomes[f"rejected {kind}"] += 1
            if not names_the_mutation(str(error), path, kind):
                unnamed.append(f"{kind} {key_path(path)}: {error}")
            return
        outcomes["accepted"] += 1
        run_job_consumers(plan.config, plan, tmp_path)  # an accepted config must not crash

    check()
    total = outcomes["rejected"] + outcomes["accepted"]
    assert total >= N_CONFIGS
    assert not unnamed, "\n".join(unnamed[:10])
    summary = (
        f"config fuzz: {outcomes['rejected']} of {total} mutated configs rejected before any "
        f"job, each naming its key; {outcomes['accepted']} accepted and ran the job consumers. "
        + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()) if k.startswith("rejected "))
    )
    record_property("config_fuzz", summary)
    with capsys.disabled():
        print("\n" + summary)
    assert outcomes["rejected"] > total // 2  # most single mutations break a config


def dry_run(workdir: Path, config: dict) -> subprocess.CompletedProcess:
    """`snakemake -n` on ``config`` in a fresh ``workdir``."""
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "-n"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_a_sample_agrees_with_a_real_snakemake_dry_run(files, tmp_path):
    """The Snakefile runs the same checks: a few mutated configs through `snakemake -n`."""
    verdicts = []

    @fuzz_settings(max_examples=6, deadline=None, database=None, derandomize=True)
    @given(mutated_configs(files))
    def check(case):
        config, path, kind = case
        try:
            plan_workflow(copy.deepcopy(config))
            expected = None
        except ConfigError as error:
            expected = str(error)
        run = dry_run(tmp_path / f"run{len(verdicts)}", config)
        output = run.stdout + run.stderr
        if expected is None:
            assert run.returncode == 0, output[-2000:]
        else:
            assert run.returncode == 1 and expected in output, (expected, output[-2000:])
        verdicts.append(expected is None)

    check()
    # the demo config itself, so the sample holds an accepted config whatever the draws
    run = dry_run(tmp_path / "demo", yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    assert len(verdicts) >= 6 and not all(verdicts), verdicts
