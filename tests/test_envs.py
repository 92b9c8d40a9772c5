"""Conda envs per rule family: pinned third-party dependencies only; the package comes from the
checkout, so no job can run a stale installed copy."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
PACKAGE = REPO / "workflow" / "entropy_sentinel"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_pins(env: Path) -> dict[str, str]:
    spec = yaml.safe_load(env.read_text())
    pins = {}
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            for requirement in dependency["pip"]:
                name, _, version = requirement.partition("==")
                pins[normalise(name)] = version
    return pins


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_envs_hold_pinned_third_party_dependencies_only(env):
    spec = yaml.safe_load(env.read_text())
    for dependency in spec["dependencies"]:
        if isinstance(dependency, str):
            assert re.fullmatch(r"[\w-]+=[\d.]+", dependency), f"{env.name}: unpinned {dependency}"
            continue
        for requirement in dependency["pip"]:
            assert re.fullmatch(r"[\w.-]+==[\w.+]+", requirement), f"{env.name}: {requirement}"
    text = env.read_text()
    assert "entropy-sentinel" not in text and "file://" not in text and "-e " not in text


def top_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """Third-party modules and package modules imported when ``path`` is run or imported."""
    third_party, package = set(), set()
    tree = ast.parse(path.read_text())
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in tree.body:  # module level only: lazy imports serve optional features
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{parent}.{base}".rstrip(".")
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            root = module.split(".")[0]
            if root == "entropy_sentinel":
                package.add(module)
            elif root not in sys.stdlib_module_names and root != "__future__":
                third_party.add(root)
    return third_party, package


def script_requirements(script: Path) -> set[str]:
    """Distributions that must be installed for ``script`` to start (its import closure)."""
    third_party, pending = top_level_imports(script)
    seen = set()
    while pending:
        module = pending.pop()
        path = PACKAGE.parent / Path(*module.split("."))
        for candidate in (path / "__init__.py", path.with_suffix(".py")):
            if candidate.is_file() and candidate not in seen:
                seen.add(candidate)
                found, more = top_level_imports(candidate)
                third_party |= found
                pending |= more
    distributions = importlib.metadata.packages_distributions()
    return {normalise(distributions.get(module, [module])[0]) for module in third_party}


def rules_with_env_and_script() -> list[tuple[str, Path, Path]]:
    rules = []
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", text, re.M):
            env = re.search(r"\n    conda:\n        \"(.+)\"", body)
            script = re.search(r"\n    script:\n        \"(.+)\"", body)
            assert env and script, f"rule {name} needs conda: and script:"
            rules.append((name, path.parent / env.group(1), path.parent / script.group(1)))
    return rules


def test_every_rule_env_holds_what_its_script_imports():
    rules = rules_with_env_and_script()
    assert len(rules) >= 10
    for name, env, script in rules:
        missing = script_requirements(script.resolve()) - set(pip_pins(env.resolve()))
        assert not missing, f"rule {name}: {env.name} lacks {sorted(missing)}"


def lock_pins() -> dict[str, str]:
    sys.path.insert(0, str(REPO / "envs"))
    try:
        from pin_from_lock import read_lock
    finally:
        sys.path.pop(0)
    return read_lock(REPO / "requirements.lock")


def test_env_pins_match_the_lock():
    """Every pin of envs/*.yaml is the lock's version (`make lock` writes both)."""
    lock = lock_pins()
    assert {"torch", "openai", "ruff", "snakefmt", "black", "scikit-learn"} <= set(lock)
    for env in ENVS:
        for name, version in pip_pins(env).items():
            assert name in lock, f"{env.name}: {name} is not in requirements.lock"
            assert lock[name] == version, f"{env.name}: {name}=={version}, lock {lock[name]}"


def test_the_venv_holds_the_lock():
    """The tests run with what the lock says (a stale venv: `make .venv/.installed`)."""
    stale = []
    for name, version in lock_pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a platform-only dependency
        if installed.split("+")[0] != version:
            stale.append(f"{name} {installed} (lock {version})")
    assert not stale, stale


def test_the_env_pin_check_fails_on_a_disagreement(tmp_path):
    sys.path.insert(0, str(REPO / "envs"))
    try:
        from pin_from_lock import read_lock, repin
    finally:
        sys.path.pop(0)
    lock = tmp_path / "requirements.lock"
    lock.write_text("openai==3.60.0\n    # via entropy-sentinel\ntorch==2.13.0+cpu\n")
    env = tmp_path / "env.yaml"
    env.write_text(
        "dependencies:\n  - pip=25.3\n  - pip:\n      - openai==3.57.0 # why\n      - six==1.0\n"
    )
    assert pip_pins(env)["openai"] != read_lock(lock)["openai"]
    assert repin(env, read_lock(lock)) == ["six"]
    assert pip_pins(env) == {"openai": "3.60.0", "six": "1.0"}
    assert "- pip=25.3" in env.read_text() and "# why" in env.read_text()


def test_the_makefile_pip_is_the_envs_pip():
    makefile = (REPO / "Makefile").read_text()
    for env in ENVS:
        (conda_pip,) = re.findall(r"- pip=([\d.]+)", env.read_text())
        assert f"pip=={conda_pip}" in makefile, env.name


def test_jobs_import_the_package_from_the_checkout(tmp_path):
    """A stale copy earlier on the job's path (as in a conda env that pip-installed the project)
    must not be imported: the job runs this checkout's code."""
    stale = tmp_path / "stale" / "entropy_sentinel"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("raise ImportError('stale copy of entropy_sentinel')\n")
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    target = "resources/benchmarks/synthetic.parquet"
    run = subprocess.run(
        [str(REPO / ".venv" / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "1"]
        + [target],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(stale.parent), "HOME": str(tmp_path)},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (workdir / target).exists()
