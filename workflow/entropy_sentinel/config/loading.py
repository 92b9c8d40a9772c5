"""Reading and validating a workflow config: every problem named by file, line and key.

``load_config_file`` parses YAML strictly (a duplicate key is an error, a syntax error names
file:line:col); ``validate_config`` checks a config against the JSON schema, fills the
schema's defaults and names the key path of every violation.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the offending key (and file, when known) in the message."""


def key_path(parts) -> str:
    """``("models", "tiny", "path")`` as ``models.tiny.path`` (list positions as ``[0]``)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def load_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict; duplicate keys and syntax errors are errors."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(p for p in (error.context, error.problem) if p)
        if error.context_mark and mark and error.context_mark.line != mark.line:
            problem += f" (the construct started on line {error.context_mark.line + 1})"
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    for keys, mark, first in _duplicate_keys(root, ()):
        raise ConfigError(
            f"{path}:{mark.line + 1}:{mark.column + 1}: duplicate key {key_path(keys)} "
            f"(first defined on line {first.line + 1}); the later one would silently replace "
            "it: rename or remove one"
        )
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: a config must be a mapping of keys, not {type(config).__name__}"
        )
    return config


def _duplicate_keys(node, keys: tuple):
    if isinstance(node, yaml.MappingNode):
        first_marks: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in first_marks and key != "<<":
                yield (*keys, key), key_node.start_mark, first_marks[key]
            first_marks.setdefault(key, key_node.start_mark)
            yield from _duplicate_keys(value_node, (*keys, key))
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*keys, position))


@functools.lru_cache(maxsize=4)
def _schema(schema_path: Path) -> dict:
    return yaml.safe_load(schema_path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=4)
def _schema_validator(schema_path: Path):
    from jsonschema import Draft202012Validator, validators

    schema = _schema(schema_path)
    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if isinstance(instance, dict) and "default" in subschema:
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    with_defaults = validators.extend(Draft202012Validator, {"properties": fill_defaults})
    return with_defaults(schema)


def schema_defaults(*path: str, schema_path: str | Path = SCHEMA) -> dict:
    """The defaults of the object at ``path`` in the schema (e.g. ``"generation",
    "settings"``): what code that takes such a section outside a config falls back to."""
    node = _schema(Path(schema_path))
    for name in path:  # "*": the entries of a map (e.g. "monitor", "*")
        node = node["additionalProperties"] if name == "*" else node["properties"][name]
    return {k: copy.deepcopy(v["default"]) for k, v in node["properties"].items() if "default" in v}


def validate_config(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Check ``config`` against the schema in place, filling the schema's defaults.

    Raises ``ConfigError`` naming the key path of each violation.
    """
    validator = _schema_validator(Path(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{key_path(e.absolute_path)}: {_describe(e)}" for e in errors]
        raise ConfigError("; ".join(lines))
    return config


def parse_settings(items: list[str], flag: str = "--set") -> dict:
    """``KEY=VALUE`` strings as a mapping, each value read as YAML (``C=0.5`` is a number)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} features=3D")
        settings[key] = yaml.safe_load(value)
    return settings


def validate_section(name: str, values: dict, schema_path: str | Path = SCHEMA) -> dict:
    """One top-level section (e.g. ``estimator``) checked in place and filled with the
    schema's defaults, for commands that take a section without a whole config."""
    validator = _schema_validator(Path(schema_path))
    section = validator.evolve(schema=validator.schema["properties"][name])
    errors = sorted(section.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{key_path((name, *e.absolute_path))}: {_describe(e)}" for e in errors]
        raise ConfigError("; ".join(lines))
    return values


def _describe(error) -> str:
    if error.validator == "additionalProperties":
        return f"{error.message} (known keys are documented in the schema)"
    if error.context:  # anyOf/oneOf: the most specific reason
        from jsonschema.exceptions import best_match

        return best_match(error.context).message
    return error.message
