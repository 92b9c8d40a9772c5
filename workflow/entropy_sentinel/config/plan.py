"""The workflow's plan: what the config asks for, checked before any job runs.

``plan_workflow`` is the one way a config becomes a plan (the Snakefile and the tests use it):
JSON-Schema validation catches unknown keys and wrong types; the rest checks what a schema
cannot: names and files that must exist, and how many shards each benchmark has.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from entropy_sentinel.config.loading import SCHEMA, ConfigError, validate_config
from entropy_sentinel.data.registry import get_spec
from entropy_sentinel.data.synthetic import DOMAINS
from entropy_sentinel.generate.shard import count_shards, parts_dir, pending_errors

__all__ = ["ConfigError", "WorkflowPlan", "plan_workflow", "sorted_keys"]


def plan_workflow(config: dict, schema_path: str | Path = SCHEMA) -> WorkflowPlan:
    """Validate ``config`` (in place: defaults filled, keys sorted) and plan the workflow."""
    validate_config(config, schema_path)
    # Snakemake compares params in key order: reordering a config file must not rerun any job.
    canonical = sorted_keys(config)
    config.clear()
    config.update(canonical)
    for name, spec in config["models"].items():
        check_model_source(name, spec)
    for name, settings in config["benchmarks"].items():
        check_benchmark_source(name, settings)
        check_gradable(name, settings, config.get("grading", {}))
    check_server_urls(config)
    return WorkflowPlan(config)


def check_server_urls(config: dict) -> None:
    """Server URLs must be http(s) URLs: a typo would otherwise fail only when a job runs."""
    from entropy_sentinel.generate.backends.openai_backend import url_problem

    generation = config["generation"]
    judge = config.get("grading", {}).get("judge", {})
    urls = {
        "generation.openai.base_url": (generation.get("openai") or {}).get("base_url")
        if generation["backend"] == "openai"
        else None,
        "grading.judge.base_url": judge.get("base_url") if judge.get("enabled") else None,
    }
    for key, url in urls.items():
        problem = url is not None and url_problem(url)
        if problem:
            raise ConfigError(f"{key}: {problem}")


def check_gradable(name: str, settings: dict, grading: dict) -> None:
    """Open-ended GPQA has free-text answers only a judge can grade: without one every row
    would be dropped as ungraded."""
    is_gpqa = settings["source"] == "registry" and settings.get("name", name) == "gpqa"
    open_answers = is_gpqa and settings.get("gpqa_mode") == "open"
    if open_answers and not grading.get("judge", {}).get("enabled"):
        raise ConfigError(
            f"benchmarks.{name}.gpqa_mode: open answers need the LLM judge, and "
            "grading.judge.enabled is false; set gpqa_mode: mcq (the default), or enable "
            "grading.judge with base_url and model"
        )


DATA_FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".pq")


def check_benchmark_source(name: str, settings: dict) -> None:
    """A benchmark read from local files must point at files that exist, of a known type."""
    if "path" not in settings or settings["source"] not in ("file", "registry"):
        return
    path = Path(settings["path"])
    key = f"benchmarks.{name}.path"
    if settings["source"] == "file":
        if path.suffix.lower() not in DATA_FILE_TYPES:
            raise ConfigError(f"{key}: {path} is not one of the readable types {DATA_FILE_TYPES}")
        if not path.is_file():
            raise ConfigError(f"{key}: no such file {path} (source: file; fix the path)")
        fields = file_fields(path)
        for setting in ("question_field", "answer_field", "id_field", "domain_field"):
            if fields is not None and setting in settings and settings[setting] not in fields:
                raise ConfigError(
                    f"benchmarks.{name}.{setting}: {settings[setting]!r} is not a field of "
                    f"{path}; its fields: {sorted(fields)}"
                )
    elif not path.exists():
        raise ConfigError(
            f"{key}: no such file or folder {path} (source: registry reads the benchmark's "
            "files there; fix the path, or remove it to download from the Hugging Face Hub)"
        )


def check_model_source(name: str, spec: dict) -> None:
    """A ``local`` folder or ``gguf`` file must exist before any job runs."""
    if spec["source"] not in ("local", "gguf"):
        return
    path = Path(spec["path"])
    key = f"models.{name}.path"
    if spec["source"] == "gguf" and not path.is_file():
        raise ConfigError(
            f"{key}: no such file {path} (source: gguf needs an existing .gguf file; "
            "fix the path or download the file first)"
        )
    if spec["source"] == "local" and not (path / "config.json").is_file():
        problem = "has no config.json" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"{key}: {path} {problem} (source: local needs a Hugging Face model folder "
            "with config.json and weights; fix the path)"
        )


def sorted_keys(value):
    """``value`` with every mapping's keys in sorted order (recursively)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def file_fields(path: Path) -> set[str] | None:
    """The field names of a data file's first record (None when they cannot be told cheaply)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with path.open("rb") as handle:
                for line in handle:
                    if line.strip():
                        record = json.loads(line)
                        return set(record) if isinstance(record, dict) else None
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", errors="replace", newline="") as handle:
                return set(next(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ",")))
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return set(pq.read_schema(path).names)
    except (ValueError, StopIteration, OSError):
        return None  # unreadable here: the loader reports it row by row
    return None


class WorkflowPlan:
    def __init__(self, config: dict):
        self.config = config
        self.models = list(config["models"])
        self.benchmarks = list(config["benchmarks"])
        self.shard_size = int(config["generation"].get("shard_size", 500))
        for name, settings in config["benchmarks"].items():
            self._check_benchmark(name, settings)
        self._check_estimator()

    def _check_benchmark(self, name: str, settings: dict) -> None:
        key = f"benchmarks.{name}"
        if settings["source"] == "registry":
            try:
                get_spec(settings.get("name", name))
            except KeyError as error:
                raise ConfigError(f"{key}.name: {error.args[0]}") from None
        if settings["source"] == "synthetic":
            unknown = sorted(set(settings.get("domains", [])) - set(DOMAINS))
            if unknown:
                raise ConfigError(
                    f"{key}.domains: unknown domains {unknown}; known: {sorted(DOMAINS)}"
                )

    def _check_estimator(self) -> None:
        estimator = self.config["estimator"]
        known = set(self.slices())
        if known:
            unknown = sorted(set(estimator["train_slices"]) - known)
            if unknown:
                raise ConfigError(
                    f"estimator.train_slices: {unknown} are not {estimator['slice_by']}s of "
                    f"this config (estimator.slice_by: {estimator['slice_by']}); "
                    f"known: {sorted(known)}"
                )

    def slices(self) -> list[str]:
        """The slice names known before loading any data (empty when they depend on data)."""
        if self.config["estimator"]["slice_by"] == "benchmark":
            return self.benchmarks
        names = []
        for settings in self.config["benchmarks"].values():
            if settings["source"] != "synthetic":
                return []
            names.extend(settings.get("domains") or DOMAINS)
        return names

    def expected_items(self, benchmark: str) -> int | None:
        settings = self.config["benchmarks"][benchmark]
        if settings["source"] == "synthetic":
            count = settings["n_per_domain"] * len(settings.get("domains") or DOMAINS)
        elif settings.get("per_domain") and settings.get("domains"):
            count = settings["per_domain"] * len(settings["domains"])
        else:
            count = settings.get("expected_items")
        caps = [c for c in (settings.get("limit"), settings.get("first")) if c]
        if count is None:
            return min(caps) if caps else None
        return min([count, *caps])

    def n_shards(self, benchmark: str) -> int:
        expected = self.expected_items(benchmark)
        return 1 if expected is None else count_shards(expected, self.shard_size)

    def derived_files(self) -> dict[str, list[str]]:
        """Each intermediate file and the files made from it (generation shards to evaluation)."""
        derived = {}
        for model in self.models:
            evaluation = f"results/evaluation/{model}/metrics.json"
            for benchmark in self.benchmarks:
                grades = f"results/grades/{model}/{benchmark}.parquet"
                features = f"results/features/{model}/{benchmark}.parquet"
                for shard in range(self.n_shards(benchmark)):
                    derived[f"results/generations/{model}/{benchmark}/shard-{shard}.parquet"] = [
                        grades
                    ]
                derived[grades] = [features]
                derived[features] = [evaluation]
            derived[evaluation] = ["results/summary.md"]
        return derived

    def pending_error_files(self, root: str | Path = ".") -> list[str]:
        """Generation files written with error rows still to retry (their parts are kept)."""
        root = Path(root)
        retry = self.config["generation"].get("retry_truncated", {})
        files = []
        for model in self.models:
            for benchmark in self.benchmarks:
                kinds = ["shard"]
                chosen = retry.get("benchmarks")
                if retry.get("enabled") and (chosen is None or benchmark in chosen):
                    kinds.append("retry")
                for kind in kinds:
                    for shard in range(self.n_shards(benchmark)):
                        path = f"results/generations/{model}/{benchmark}/{kind}-{shard}.parquet"
                        if pending_errors(root / path):
                            files.append(path)
        return files

    def missing_intermediates(self, root: str | Path = ".") -> tuple[list[str], list[str]]:
        """Intermediate files that are missing while files made from them exist: those to
        rebuild, and generation shards that would have to be generated from scratch.

        Snakemake rebuilds a missing intermediate only when a consumer must rerun anyway, so
        after an interrupted forced job (whose output Snakemake deletes) it reports "Nothing to
        be done" over stale results. The Snakefile makes the first list targets: they and
        everything made from them are rebuilt. A shard is in it only while its committed
        chunks remain (an interrupted generation resumes from them); the second list is
        reported, not rebuilt, since a deleted shard may be deliberate and costs GPU hours.
        """
        root = Path(root)
        rebuild, from_scratch = [], []
        for path, made_from_it in self.derived_files().items():
            if (root / path).exists() or not any((root / p).exists() for p in made_from_it):
                continue
            is_shard = path.startswith("results/generations/")
            if is_shard and not parts_dir(root / path).is_dir():
                from_scratch.append(path)
            else:
                rebuild.append(path)
        return rebuild, from_scratch
